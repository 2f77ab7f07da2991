#!/usr/bin/env python3
"""Validates exported events against the ledger's JSON Schemas (docs/schemas).

    python tools/validate_events.py PATH...          # NDJSON files, or directories of them
    python tools/validate_events.py --schemas DIR --shown N PATH...

Every line of every file (a directory: every `*.ndjson` under it, at any depth) must be one event
as `ledger export` writes it, valid against docs/schemas/event.schema.json: the envelope, and the
payload against events/<type>.v<schema_version>.schema.json. First, every schema is checked
against the JSON Schema 2020-12 metaschema.

Needs the `jsonschema` package from PyPI with its date-time format checker (`rfc3339-validator`):
tools/validate_events.requirements.txt pins both; scripts/test.sh installs them into a virtual
environment beside the build (`jsonschema_venv` in scripts/python_tool.sh). Formats (`uuid`,
`date`, `date-time`) are checked, not only annotated: without the date-time checker this refuses
to run rather than check less than it says.

Prints how many events of how many types it validated. Exit status 1 when a schema is not a valid
2020-12 schema, a path holds no event file, or a line does not validate; each such line is named
with its file, line number, position, type and the schema's error.
"""

import argparse
import collections
import json
import sys
from pathlib import Path
from urllib.parse import urljoin

try:
    import jsonschema
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
except ImportError:
    sys.exit(
        "validate_events.py needs the jsonschema package from PyPI: "
        "`pip install -r tools/validate_events.requirements.txt` (scripts/test.sh installs it "
        "into <target>/jsonschema-venv)"
    )

DEFAULT_SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"
# Lines listed per file, with their problems, before the rest are only counted (`--shown`): a
# wrong field in every event of a large export would otherwise bury the summary.
SHOWN_LINES_PER_FILE = 20


def load_schemas(root):
    """Every schema under `root`, by path, each checked against the 2020-12 metaschema."""
    paths = sorted(root.rglob("*.schema.json"))
    if not paths:
        sys.exit(f"no *.schema.json under {root}")
    schemas = {}
    bad = []
    for path in paths:
        schema = json.loads(path.read_text(encoding="utf-8"))
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as e:
            bad.append(f"{path}: not a valid JSON Schema 2020-12: {e.message}")
        if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
            bad.append(f"{path}: $schema is not the 2020-12 dialect")
        if "$id" not in schema:
            bad.append(f"{path}: has no $id")
        schemas[path] = schema
    if bad:
        sys.exit("\n".join(bad))
    return schemas


class EventChecker:
    """Checks exported event lines against event.schema.json, every schema registered under its
    $id.

    event.schema.json picks the payload's schema with one if/then per event type; trying all of
    them on every event makes most of the work. So, when each branch has the plain shape this
    reads (`if` type is T, `then` schema_version is V and the payload is the schema named), an
    event is checked as the envelope without those branches plus the one payload schema its type
    and version name: the same checks, several times faster. An event that fails, or whose type
    and version no branch names, is checked against the whole schema, whose errors are the ones
    reported.
    """

    def __init__(self, root):
        schemas = load_schemas(root)
        registry = Registry().with_resources(
            (schema["$id"], Resource.from_contents(schema, default_specification=DRAFT202012))
            for schema in schemas.values()
        )
        checker = format_checker()
        envelope = schemas.get(root / "event.schema.json")
        if envelope is None:
            sys.exit(f"{root}/event.schema.json is missing")
        self.schema_count = len(schemas)
        self.whole = Draft202012Validator(envelope, registry=registry, format_checker=checker)
        payload_ids = payload_dispatch(envelope)
        by_id = {schema["$id"]: schema for schema in schemas.values()}
        if payload_ids is None or not set(payload_ids.values()) <= set(by_id):
            self.envelope, self.payloads = None, {}
            return
        alone = {key: value for key, value in envelope.items() if key != "allOf"}
        self.envelope = Draft202012Validator(alone, registry=registry, format_checker=checker)
        self.payloads = {
            key: Draft202012Validator(by_id[schema_id], registry=registry, format_checker=checker)
            for key, schema_id in payload_ids.items()
        }

    def problems(self, event):
        """What is wrong with `event` (a parsed line); empty when it validates."""
        key = (event.get("type"), event.get("schema_version")) if isinstance(event, dict) else None
        payload = self.payloads.get(key) if self.envelope else None
        if payload is not None and self.envelope.is_valid(event) and payload.is_valid(event["payload"]):
            return []
        return [describe(e) for e in self.whole.iter_errors(event)]


def format_checker():
    """Formats checked, not only annotated. FormatChecker quietly skips a format whose checker's
    package is missing (date-time needs rfc3339-validator): refuse to run without them."""
    checker = FormatChecker()
    missing = {"date-time", "date", "uuid"} - set(checker.checkers)
    if missing:
        sys.exit(
            f"the jsonschema install cannot check the formats {sorted(missing)}: install "
            "tools/validate_events.requirements.txt (rfc3339-validator for date-time)"
        )
    return checker


def payload_dispatch(envelope):
    """The $id of the payload schema for each (type, version), read from the branches of
    event.schema.json's allOf; None when a branch has another shape than `if` type is present and
    is T, `then` schema_version is V and the payload is a `$ref`."""
    dispatch = {}
    for branch in envelope.get("allOf", []):
        try:
            if_properties = branch["if"]["properties"]
            then = branch["then"]["properties"]
            event_type = if_properties["type"]["const"]
            (version,) = then["schema_version"]["enum"]
            ref = then["payload"]["$ref"]
        except (KeyError, TypeError, ValueError):
            return None
        plain = (
            set(branch) == {"if", "then"}
            and set(branch["if"]) == {"properties", "required"}
            and branch["if"]["required"] == ["type"]
            and set(if_properties) == {"type"}
            and set(branch["then"]) == {"properties"}
            and set(then) == {"schema_version", "payload"}
            and set(then["payload"]) == {"$ref"}
        )
        if not plain:
            return None
        dispatch[(event_type, version)] = urljoin(envelope["$id"], ref)
    return dispatch


def event_files(paths):
    files = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(path.rglob("*.ndjson"))
            if not found:
                sys.exit(f"{path}: no *.ndjson file under it")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            sys.exit(f"{path}: no such file or directory")
    return files


def describe(error):
    """The deepest, most relevant error, with where in the event it is."""
    best = jsonschema.exceptions.best_match([error])
    where = "/".join(str(p) for p in best.absolute_path) or "(the event)"
    return f"{best.message} (at {where})"


def check_file(checker, path, counts, problems, shown_max):
    shown = 0
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                found = [f"not JSON: {e}"]
                event = {}
            else:
                found = checker.problems(event)
            if isinstance(event, dict) and not found:
                counts[(event["type"], event["schema_version"])] += 1
                continue
            if not isinstance(event, dict):
                event, found = {}, found or ["not a JSON object"]
            problems.extend(found)
            shown += 1
            if shown_max and shown > shown_max:
                continue
            for problem in found:
                print(
                    f"{path}:{number}: position {event.get('position', '?')}, "
                    f"{event.get('type', '?')} v{event.get('schema_version', '?')}: {problem}",
                    file=sys.stderr,
                )
    if shown_max and shown > shown_max:
        print(f"{path}: {shown - shown_max} more lines with problems", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="NDJSON exports, or directories of them")
    parser.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS, help="docs/schemas")
    parser.add_argument(
        "--shown",
        type=int,
        default=SHOWN_LINES_PER_FILE,
        help=f"lines with problems listed per file (0: all; {SHOWN_LINES_PER_FILE} by default)",
    )
    args = parser.parse_args()
    checker = EventChecker(args.schemas.resolve())
    files = event_files(args.paths)
    counts = collections.Counter()
    problems = []
    for path in files:
        check_file(checker, path, counts, problems, args.shown)
    types = sorted({t for t, _ in counts})
    by_type = ", ".join(f"{t} v{v}: {n}" for (t, v), n in sorted(counts.items()))
    print(
        f"validated {sum(counts.values())} events of {len(types)} types in {len(files)} files "
        f"against {checker.schema_count} schemas (jsonschema {jsonschema_version()}): {by_type or 'none'}"
    )
    if problems:
        print(f"{len(problems)} problems", file=sys.stderr)
        return 1
    return 0


def jsonschema_version():
    from importlib.metadata import version

    return version("jsonschema")


if __name__ == "__main__":
    sys.exit(main())
