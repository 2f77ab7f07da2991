// Every account's figures from the events alone, as docs/events.md specifies them ("The figures",
// each event type, reversals), in the shape of the server's answers (api/src/views.rs
// AccountView and BalanceView): `GET …/accounts/{code}` at the head, and
// `GET …/accounts/{code}/balances?at_position=P` right after chosen positions. The Verify page
// computes them from an export, trusting nothing the server says.
//
// Money is BigInt units at the asset's scale: an amount has up to 18 fractional digits and up to
// 28 significant ones, beyond what a JavaScript number holds exactly.

import { forStringify, numberSource } from "./canonical.js";
import { fromUnits } from "./format.js";

/** The highest scale an asset may have (docs/events.md, `AssetDefined`). */
const SCALE_MAX = 18;

/** What a book keeps of one account: its opening, status, version, figures and limits. */
function newAccount(position, recordedAt, p) {
  return {
    id: p.account_id,
    code: p.code,
    allowNegative: p.allow_negative,
    metadata: p.metadata,
    position,
    openedAt: recordedAt,
    status: "open",
    version: position,
    figures: new Map(), // asset → { posted, debits, credits, position, moved: { position, posted } | null }
    limits: new Map(), // asset → { min, max } in units, null: unbounded
  };
}

/** The units of an amount written at exactly `scale` fractional digits (docs/events.md, "Amounts"). */
export function amountUnits(text, scale, { signed = false } = {}) {
  const digits = scale ? `(0|[1-9][0-9]*)\\.[0-9]{${scale}}` : "(0|[1-9][0-9]*)";
  if (typeof text !== "string" || !new RegExp(`^${signed ? "-?" : ""}${digits}$`).test(text)) {
    throw new Error(`${JSON.stringify(text)} is not an amount at scale ${scale}`);
  }
  return BigInt(text.replace(".", ""));
}

/** A zero written with a sign or a minus before zero digits is no amount the ledger writes. */
function boundUnits(text, scale) {
  if (text === null) return null;
  const units = amountUnits(text, scale, { signed: true });
  if (units === 0n && text.startsWith("-")) throw new Error(`${text} is a negative zero`);
  return units;
}

/** A time as chrono writes a DateTime<Utc> in JSON: only the sub-second digits that are not zero, in groups of 3. */
export function chronoTime(recordedAt) {
  return recordedAt.replace(/\.([0-9]{6})Z$/, (_, f) => (f === "000000" ? "Z" : f.endsWith("000") ? `.${f.slice(0, 3)}Z` : `.${f}Z`));
}

/** Orders codes by their bytes, as the server's PostgreSQL (C collation) orders them. */
export function byBytes(a, b) {
  return a < b ? -1 : a > b ? 1 : 0; // codes are ASCII: UTF-16 order is byte order
}

/** Postings as comparable text: source, destination, asset and amount, in order. */
function routeText(postings) {
  return JSON.stringify(postings.map((p) => [p.source, p.destination, p.asset, p.amount]));
}

export class Books {
  constructor() {
    this.scales = new Map();
    this.accounts = new Map();
    /** Open holds: pending transaction or trade id → the postings it reserves now. */
    this.holds = new Map();
    this.recorded = new Set();
    this.reversed = new Set();
    /** What does not follow the documents but leaves the figures computable: each with its position. */
    this.problems = [];
    this.head = 0;
  }

  /**
   * Applies one event ({ position, type, schemaVersion, recordedAt, payload }). Throws when the
   * figures cannot go on: an unknown type or version, an account or asset never defined, an
   * amount that does not fit its asset (docs/events.md: a consumer must stop, not skip).
   */
  apply(event) {
    const handler = HANDLERS[event.type];
    if (!handler || event.schemaVersion !== "1") {
      throw new Error(`${event.type} version ${event.schemaVersion} is an event this verifier does not know`);
    }
    if (MONEY.has(event.type)) this.checkPostings(event.payload);
    handler.call(this, event.position, event.payload, event.recordedAt);
    this.head = event.position;
  }

  /**
   * Every posting of a money event names opened accounts, a defined asset and an amount above
   * zero at its scale: checked before any applies, so an event that cannot be applied leaves the
   * figures as the event before left them.
   */
  checkPostings(p) {
    for (const list of [p.released ?? [], p.postings ?? []]) {
      if (!Array.isArray(list)) throw new Error("its postings are not a list");
      for (const posting of list) {
        if (amountUnits(posting.amount, this.scaleOf(posting.asset)) === 0n) throw new Error(`a posting of zero ${posting.asset}`);
        this.account(posting.source);
        this.account(posting.destination);
      }
    }
  }

  problem(position, text) {
    this.problems.push({ position, problem: text });
  }

  scaleOf(asset) {
    const scale = this.scales.get(asset);
    if (scale === undefined) throw new Error(`asset ${asset} was never defined`);
    return scale;
  }

  account(code) {
    const account = this.accounts.get(code);
    if (!account) throw new Error(`account ${code} was never opened`);
    return account;
  }

  /** An account's figures in an asset, made (all zero) the first time a posting names them. */
  figures(account, asset) {
    let f = account.figures.get(asset);
    if (!f) {
      f = { posted: 0n, debits: 0n, credits: 0n, position: 0, moved: null };
      account.figures.set(asset, f);
    }
    return f;
  }

  /**
   * One posting's effect (docs/events.md, "The figures"): `move`, `reserve` or `release`. Both
   * accounts' figures in the asset, and the accounts' versions, take the event's position.
   */
  step(position, posting, effect) {
    const amount = amountUnits(posting.amount, this.scaleOf(posting.asset));
    if (posting.source === posting.destination) this.problem(position, `a posting from ${posting.source} to itself`);
    const [source, destination] = [posting.source, posting.destination].map((code) => {
      const account = this.account(code);
      account.version = position;
      const f = this.figures(account, posting.asset);
      f.position = position;
      return f;
    });
    if (effect === "move") {
      source.posted -= amount;
      destination.posted += amount;
      source.moved = { position, posted: source.posted };
      destination.moved = { position, posted: destination.posted };
    } else {
      const sign = effect === "reserve" ? 1n : -1n;
      source.debits += sign * amount;
      destination.credits += sign * amount;
      if (source.debits < 0n || destination.credits < 0n) this.problem(position, `releases more ${posting.asset} than ${posting.source} → ${posting.destination} had reserved`);
    }
  }

  /** A transaction or trade: its postings move, or are reserved when it is pending. */
  record(position, id, p) {
    if (this.recorded.has(id)) this.problem(position, `${id} is recorded twice`);
    this.recorded.add(id);
    if (p.pending === true) this.holds.set(id, p.postings);
    for (const posting of p.postings) this.step(position, posting, p.pending === true ? "reserve" : "move");
  }

  /** A settlement: the hold's reservations, listed again as `released`, end (or, for a part, the part's). */
  release(position, p) {
    const reserved = this.holds.get(p.pending_id);
    if (!reserved) this.problem(position, `settles ${p.pending_id}, which is not an open hold`);
    else if (!p.remaining && routeText(p.released) !== routeText(reserved)) this.problem(position, `releases other postings than ${p.pending_id} reserved`);
    if (p.remaining) this.holds.set(p.pending_id, p.remaining);
    else this.holds.delete(p.pending_id);
    for (const posting of p.released) this.step(position, posting, "release");
  }

  /** The account answer of `code` now: GET /v1/ledgers/{ledger}/accounts/{code}. */
  accountAnswer(code) {
    const a = this.accounts.get(code);
    return {
      id: a.id,
      code: a.code,
      allow_negative: a.allowNegative,
      metadata: forStringify(a.metadata), // its numbers as written, for JSON.stringify
      position: a.position,
      opened_at: chronoTime(a.openedAt),
      status: a.status,
      version: a.version,
      balances: [...a.figures.keys()].sort(byBytes).map((asset) => this.balanceAnswer(asset, a.figures.get(asset))),
      limits: [...a.limits.keys()].sort(byBytes).map((asset) => this.limitAnswer(asset, a.limits.get(asset))),
    };
  }

  balanceAnswer(asset, f) {
    const text = (units) => fromUnits(units, this.scales.get(asset));
    return {
      asset,
      balance: text(f.posted),
      pending_debits: text(f.debits),
      pending_credits: text(f.credits),
      available: text(f.posted - f.debits),
      trade_date_balance: text(f.posted + f.credits - f.debits),
      position: f.position,
    };
  }

  /** A bound as the server answers it: at the asset's scale, as the event wrote it; null when unbounded. */
  limitAnswer(asset, { min, max }) {
    const text = (units) => (units === null ? null : fromUnits(units, this.scales.get(asset)));
    return { asset, min_balance: text(min), max_balance: text(max) };
  }

  /**
   * Every account's posted balances right after the events applied so far: per account, each
   * asset it has moved money in, with the balance after its last move and that move's position
   * (GET …/balances?at_position=P reads the postings history the same way).
   */
  postedSnapshot() {
    const snapshot = new Map();
    for (const [code, a] of this.accounts) {
      const moved = [...a.figures.entries()].filter(([, f]) => f.moved).sort(([x], [y]) => byBytes(x, y));
      snapshot.set(code, moved.map(([asset, f]) => ({ asset, balance: fromUnits(f.moved.posted, this.scales.get(asset)), position: f.moved.position })));
    }
    return snapshot;
  }

  /** Per asset, the posted balances sum to zero and the pending debits equal the pending credits. */
  checkTotals() {
    const totals = new Map();
    for (const a of this.accounts.values()) {
      for (const [asset, f] of a.figures) {
        const t = totals.get(asset) ?? { posted: 0n, debits: 0n, credits: 0n };
        t.posted += f.posted;
        t.debits += f.debits;
        t.credits += f.credits;
        totals.set(asset, t);
      }
    }
    for (const [asset, t] of totals) {
      if (t.posted !== 0n) this.problem(this.head, `the posted balances of ${asset} sum to ${fromUnits(t.posted, this.scales.get(asset))}, not zero`);
      if (t.debits !== t.credits) this.problem(this.head, `the pending debits of ${asset} differ from its pending credits`);
    }
  }
}

/** The event types that touch figures (docs/events.md, "The figures"). */
const MONEY = new Set(["TransactionPosted", "TradeExecuted", "PendingPosted", "PendingVoided", "PendingExpired"]);

/** What each event type does (docs/events.md, "Event types"); `this` is the Books. */
const HANDLERS = {
  AssetDefined(position, p) {
    const scale = numberSource(p.scale);
    if (!/^(0|[1-9][0-9]?)$/.test(scale ?? "") || Number(scale) > SCALE_MAX) throw new Error(`scale ${scale} of ${p.asset} is not 0 to ${SCALE_MAX}`);
    if (this.scales.has(p.asset)) this.problem(position, `asset ${p.asset} is defined twice`);
    this.scales.set(p.asset, Number(scale));
  },
  AccountOpened(position, p, recordedAt) {
    if (this.accounts.has(p.code)) throw new Error(`account ${p.code} is opened twice`);
    this.accounts.set(p.code, newAccount(position, recordedAt, p));
  },
  TransactionPosted(position, p) {
    this.record(position, p.transaction_id, p);
    if (p.reverses === undefined) return;
    if (!this.recorded.has(p.reverses) || this.reversed.has(p.reverses)) this.problem(position, `reverses ${p.reverses}, which is unknown or reversed already`);
    this.reversed.add(p.reverses);
  },
  TradeExecuted(position, p) {
    this.record(position, p.trade_id, p);
  },
  PendingPosted(position, p) {
    this.release(position, p);
    for (const posting of p.postings) this.step(position, posting, "move");
  },
  PendingVoided(position, p) {
    this.release(position, p);
  },
  PendingExpired(position, p) {
    this.release(position, p);
  },
  AccountStatusChanged(position, p) {
    const account = this.account(p.account);
    account.status = p.status;
    account.version = position;
  },
  AccountLimitsSet(position, p) {
    const account = this.account(p.account);
    const scale = this.scaleOf(p.asset);
    account.limits.set(p.asset, { min: boundUnits(p.min_balance, scale), max: boundUnits(p.max_balance, scale) });
    account.version = position;
  },
  BookingMethodSet(position, p) {
    // docs/events.md, "An account's version": a change of booking method changes the account.
    this.account(p.account).version = position;
  },
  // Marks and periods change no figure and no account (docs/events.md).
  PriceMarked() {},
  PeriodClosed() {},
  PeriodReopened() {},
};
