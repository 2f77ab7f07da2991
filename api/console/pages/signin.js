// Sign in with an API key. The key stays in this tab's sessionStorage and goes out only as
// `Authorization: Bearer` to this server.

import { navigate, signIn } from "../app.js";
import { fill, h, problemBox } from "../ui.js";

export async function render({ main, query }) {
  const next = query.get("next") || "/console";
  const input = h("input", {
    id: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "lk_…",
    "aria-label": "API key",
    required: true,
  });
  const status = h("div");
  const form = h(
    "form",
    {
      class: "panel signin",
      onsubmit: async (event) => {
        event.preventDefault();
        fill(status);
        try {
          await signIn(input.value.trim());
          navigate(next.startsWith("/console") ? next : "/console", { replace: true });
        } catch (error) {
          fill(status, problemBox(error));
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key. It is kept in this tab only, and sent only to this ledger."),
    input,
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Sign in")),
    status,
  );
  fill(main, form);
  input.focus();
}
