// pgpush.d.ts: TypeScript declarations for pgpush.js, the pgpush WebSocket
// client (served at GET /pgpush.js, these at GET /pgpush.d.ts).
//
//	import { PgPush, type PgPushEvent } from './pgpush.js';
//	interface Order { id: number; status: string; total: number }
//	const push = new PgPush('wss://push.example.com/ws');
//	push.on<Order>('order:updated', (ev) => console.log(ev.data.changed_fields?.status));
//	await push.subscribe('order_changes', { filter: { status: { in: ['paid', 'shipped'] } } });
//
// They declare the module's public API; PgPush's internal methods and
// fields (connect, onFrame, subs, ...) are left out on purpose. Wire
// shapes follow SPEC §3 (snapshots §3.2, liveRows §6).

/** A JSON value as it arrives from the server. */
export type JSONValue = string | number | boolean | null | JSONValue[] | { [key: string]: JSONValue };

/** A row or event payload: a JSON object. */
export type Row = { [column: string]: JSONValue };

/**
 * An event as the server sends it on a channel (SPEC §3). `T` types the
 * row; `data` of an `updated` event also carries `changed_fields`: the
 * columns whose value changed, with their new values.
 */
export interface PgPushEvent<T extends object = Row> {
  /** Opaque event id; resume after it with `since`. Not an ordered number. */
  id: string;
  /** e.g. "order_changes" */
  channel: string;
  /** e.g. "order:updated": created, updated, deleted, left, truncated, or a custom name */
  event: string;
  /** The new row (created, updated), the old row (deleted, left), {} (truncated). */
  data: T & { changed_fields?: Partial<T> };
  /** ISO-8601 UTC with milliseconds, e.g. "2026-01-25T10:30:00.000Z". */
  timestamp: string;
}

/** A value a filter compares with. */
export type FilterValue = string | number | boolean | null;

/** The operators of one field comparison (SPEC §3.1). */
export interface FilterOperators {
  eq?: FilterValue;
  ne?: FilterValue;
  lt?: string | number;
  lte?: string | number;
  gt?: string | number;
  gte?: string | number;
  /** Up to 1,000 values. */
  in?: FilterValue[];
  nin?: FilterValue[];
  prefix?: string;
  exists?: boolean;
}

/**
 * A subscription filter (SPEC §3.1): every key must hold. `"field": value`
 * compares for equality; `"field": {op: value}` uses operators;
 * `or`, `and` and `not` combine filters. At most 8 levels and 64
 * conditions. On updated events it sees the new row, on deleted the old.
 */
export interface Filter {
  or?: Filter[];
  and?: Filter[];
  not?: Filter;
  [field: string]: FilterValue | FilterOperators | Filter | Filter[] | undefined;
}

/** The part of a WebSocket that pgpush.js uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
}

/**
 * A WebSocket constructor: the browser's (or Node 22's) global WebSocket,
 * or the `ws` package's, which also takes `{headers}` (Node 20, cookies).
 */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
  options?: { headers?: Record<string, string> },
) => WebSocketLike;

/** Options of {@link PgPush}. Every field is optional. */
export interface PgPushOptions {
  /** WebSocket constructor; default globalThis.WebSocket. In Node 20 pass the `ws` package's. */
  WebSocket?: WebSocketConstructor;
  /** Extra handshake headers (Cookie); needs a constructor that accepts them, such as `ws`'s. */
  headers?: Record<string, string>;
  /** WebSocket subprotocols. */
  protocols?: string | string[];
  /** Reconnect after a drop. Default true. */
  reconnect?: boolean;
  /** First reconnect delay cap. Default 250. */
  backoffBaseMs?: number;
  /** Largest reconnect delay. Default 10000. */
  backoffMaxMs?: number;
  /** How often to send a ping; 0 turns heartbeats off. Default 25000. */
  pingIntervalMs?: number;
  /** How long to wait for the pong before the connection is replaced. Default 10000. */
  pongTimeoutMs?: number;
  /** How long subscribe, unsubscribe and publish wait for their answer. Default 10000. */
  requestTimeoutMs?: number;
  /** How many recent event ids are remembered per channel to drop duplicates. Default 1000. */
  dedupWindow?: number;
  /** Jitter source, for tests. Default Math.random. */
  random?: () => number;
}

/** What subscribe() takes. */
export interface SubscribeOptions {
  /** Only events whose data passes the filter. */
  filter?: Filter;
  /**
   * First the current rows (SPEC §3.2), then the events after them.
   * Declared per SPEC §6; pgpush.js does not send it yet.
   */
  snapshot?: boolean;
}

/** What a 'close' listener receives. */
export interface PgPushCloseInfo {
  /** WebSocket close code (4000: heartbeat timeout; 1008: no or ended session). */
  code: number;
  reason: string;
  /** Whether a reconnect is scheduled. */
  willReconnect: boolean;
  /** When one is, after how long. */
  delayMs?: number;
}

/** The server's first frame on each (re)connect: the 'open' event. */
export interface ConnectedFrame {
  type: 'connected';
  message: string;
  /** null for an anonymous socket */
  userId: number | null;
}

/** A frame sent to every socket, such as `pgpush watch products --broadcast new_product`. */
export interface BroadcastFrame<T = Row> {
  type: string;
  data?: T;
  [key: string]: unknown;
}

/** Any frame the server sends, as the 'message' event passes it on. */
export type ServerFrame =
  | PgPushEvent
  | ConnectedFrame
  | { type: 'subscribed'; channel: string; position?: string }
  | { type: 'unsubscribed'; channel: string }
  | { type: 'snapshot'; channel: string; rows: Row[]; more: boolean }
  | { type: 'resync_required'; channel: string }
  | { type: 'published'; channel: string; id: string | number }
  | { type: 'error'; message: string; channel?: string }
  | { type: 'pong' }
  | BroadcastFrame;

/** What 'subscribed' listeners receive: `resumed` when the server replayed from an id. */
export interface SubscribedInfo {
  channel: string;
  resumed: boolean;
}

/** The lifecycle events of {@link PgPush.on}, with what their listeners receive. */
export interface PgPushLifecycleEvents {
  open: ConnectedFrame;
  close: PgPushCloseInfo;
  error: Error;
  subscribed: SubscribedInfo;
  unsubscribed: { channel: string };
  resync_required: { channel: string };
  message: ServerFrame;
}

/** An event name such as "order:updated": names of channel events hold a colon. */
export type ChannelEventName = `${string}:${string}`;

/** Options of {@link PgPush.liveRows}. */
export interface LiveRowsOptions<T extends object = Row> {
  /** Only rows (and events) that pass the filter. */
  filter?: Filter;
  /** The primary-key column the rows are kept by. Default "id". */
  key?: keyof T & string;
}

/** The handle liveRows() resolves with. */
export interface LiveRows<T extends object = Row> {
  /** The current rows, in primary-key order. */
  readonly rows: T[];
  /** Stops following the channel. */
  close(): Promise<void>;
}

/** Close code the client uses for a connection it gave up on (no pong). */
export declare const CLOSE_HEARTBEAT_TIMEOUT: 4000;

/** Close code the server uses when the session is missing or has ended. */
export declare const CLOSE_POLICY_VIOLATION: 1008;

/** What rejected promises and 'error' listeners receive; `channel` is set when the server named one. */
export declare class PgPushError extends Error {
  constructor(message: string, channel?: string);
  channel: string | undefined;
}

/**
 * Full-jitter exponential backoff: a uniformly random delay in
 * [0, min(maxMs, baseMs·2^attempt)) milliseconds; attempt is 0 for the
 * first retry.
 */
export declare function backoffDelay(attempt: number, baseMs: number, maxMs: number, random?: () => number): number;

/**
 * One logical connection to a pgpush server. It outlives the WebSocket
 * under it: subscriptions, listeners and each channel's resume position
 * survive reconnects, which resume with `since`: no event lost or repeated.
 */
export declare class PgPush {
  /**
   * @param url ws:// or wss:// URL of /ws; in a browser it defaults to the page's host.
   */
  constructor(url?: string, options?: PgPushOptions);

  readonly url: string;
  readonly options: PgPushOptions;
  /** Whether the socket is open now. */
  readonly connected: boolean;
  /** Frames counted as duplicates and dropped, for diagnostics. */
  readonly duplicates: number;

  /**
   * Adds a listener and returns a function that removes it. Listen to a
   * lifecycle event, to '*' (every channel event), to a channel event
   * name such as 'order:updated', or to a broadcast type such as
   * 'new_product'.
   */
  on<K extends keyof PgPushLifecycleEvents>(event: K, fn: (value: PgPushLifecycleEvents[K]) => void): () => void;
  on<T extends object = Row>(event: '*' | ChannelEventName, fn: (ev: PgPushEvent<T>) => void): () => void;
  on<T = Row>(event: string, fn: (frame: BroadcastFrame<T>) => void): () => void;

  /** Removes a listener added with on(). */
  off(event: string, fn: (value: any) => void): void;

  /** Resolves with the next value emitted for event. */
  once<K extends keyof PgPushLifecycleEvents>(event: K): Promise<PgPushLifecycleEvents[K]>;
  once<T extends object = Row>(event: '*' | ChannelEventName): Promise<PgPushEvent<T>>;
  once<T = Row>(event: string): Promise<BroadcastFrame<T>>;

  /**
   * Asks for the events of channel, now and after every reconnect.
   * Resolves once delivery is active; rejects with a PgPushError when the
   * server refuses (unknown channel, not allowed) or does not answer in time.
   */
  subscribe(channel: string, opts?: SubscribeOptions): Promise<{ channel: string }>;

  /** Stops the events of channel and forgets its position. */
  unsubscribe(channel: string): Promise<{ channel: string }>;

  /**
   * Sends a custom event to every subscriber of channel (needs the publish
   * grant). Resolves with the server's answer.
   */
  publish(channel: string, event: string, data?: Row): Promise<{ channel: string; id: string }>;

  /**
   * A snapshot of channel's rows plus the events after it, kept as the
   * current rows by primary key (created, updated, deleted, left,
   * truncated applied), surviving reconnects (SPEC §6). onChange gets the
   * current rows after each change, and the event applied (null after a
   * snapshot). Resolves once the first snapshot is in.
   */
  liveRows<T extends object = Row>(
    channel: string,
    opts: LiveRowsOptions<T> | undefined,
    onChange: (rows: T[], event: PgPushEvent<T> | null) => void,
  ): Promise<LiveRows<T>>;

  /** Ends the connection for good: no reconnect, pending requests are rejected. */
  close(): void;
}

export default PgPush;
