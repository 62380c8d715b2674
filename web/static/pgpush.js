// pgpush.js: the pgpush WebSocket client, an ES module for browsers and
// Node 20+ with no build step.
//
//	import { PgPush } from '/pgpush.js';
//	const c = new PgPush('wss://push.example.com/ws');
//	c.on('order:updated', (ev) => console.log(ev.data.changed_fields));
//	await c.subscribe('order_changes', { filter: { status: 'paid' } });
//
// In Node 20 there is no global WebSocket, and the session cookie must be
// sent as a header; pass the `ws` package's constructor, which takes one:
//
//	import WebSocket from 'ws';
//	const c = new PgPush('ws://127.0.0.1:3000/ws', {
//	  WebSocket, headers: { Cookie: 'pgpush_session=…' } });
//
// Guarantees: after a dropped connection the client reconnects with
// exponential backoff and full jitter and re-subscribes every channel with
// `since` set to the last event id it received on that channel, so the
// server replays what was committed meanwhile: no event is lost or repeated
// (events are also de-duplicated by id per channel, for safety). Event ids
// are opaque strings; they are not ordered numbers, the server orders by
// commit. A channel on which no event has arrived yet resumes from the
// "position" the server gave in its "subscribed" answer.

/**
 * An event as the server sends it on a channel.
 * @typedef {object} PgPushEvent
 * @property {string} id opaque event id; resume after it with `since`
 * @property {string} channel e.g. "order_changes"
 * @property {string} event e.g. "order:updated"
 * @property {Object<string, *>} data the row; for updates also `changed_fields`
 * @property {string} timestamp ISO-8601 UTC with milliseconds
 */

/**
 * Options of {@link PgPush}. Every field is optional; zero values mean the
 * documented defaults.
 * @typedef {object} PgPushOptions
 * @property {Function} [WebSocket] WebSocket constructor; default
 *   globalThis.WebSocket. In Node 20 pass the `ws` package's.
 * @property {Object<string, string>} [headers] extra handshake headers
 *   (Cookie); needs a constructor that accepts them, such as `ws`'s.
 * @property {string|string[]} [protocols] WebSocket subprotocols.
 * @property {boolean} [reconnect=true] reconnect after a drop.
 * @property {number} [backoffBaseMs=250] first reconnect delay cap.
 * @property {number} [backoffMaxMs=10000] largest reconnect delay.
 * @property {number} [pingIntervalMs=25000] how often to send a ping; 0 turns
 *   heartbeats off.
 * @property {number} [pongTimeoutMs=10000] how long to wait for the pong
 *   before the connection is taken for dead and replaced.
 * @property {number} [requestTimeoutMs=10000] how long subscribe, unsubscribe
 *   and publish wait for their answer.
 * @property {number} [dedupWindow=1000] how many recent event ids are
 *   remembered per channel to drop duplicates.
 * @property {function(): number} [random=Math.random] jitter source, for tests.
 */

/**
 * What a 'close' listener receives.
 * @typedef {object} PgPushCloseInfo
 * @property {number} code WebSocket close code (4000: heartbeat timeout)
 * @property {string} reason
 * @property {boolean} willReconnect whether a reconnect is scheduled
 * @property {number} [delayMs] when it is, after how long
 */

/** Close code the client uses for a connection it gave up on (no pong). */
export const CLOSE_HEARTBEAT_TIMEOUT = 4000;

/** Close code the server uses when the session is missing or has ended. */
export const CLOSE_POLICY_VIOLATION = 1008;

const CONNECTING = 0;
const OPEN = 1;

const defaults = {
  reconnect: true,
  backoffBaseMs: 250,
  backoffMaxMs: 10_000,
  pingIntervalMs: 25_000,
  pongTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  dedupWindow: 1000,
  random: Math.random,
};

/**
 * Error is what rejected promises and 'error' listeners receive.
 * `channel` is set when the server named one.
 */
export class PgPushError extends Error {
  /**
   * @param {string} message
   * @param {string} [channel]
   */
  constructor(message, channel) {
    super(message);
    this.name = 'PgPushError';
    /** @type {string|undefined} */
    this.channel = channel;
  }
}

/**
 * backoffDelay is the full-jitter exponential backoff: a uniformly random
 * delay in [0, min(maxMs, baseMs·2^attempt)). Full jitter spreads the
 * reconnects of many clients after a server restart instead of letting
 * them arrive in waves.
 * @param {number} attempt 0 for the first retry
 * @param {number} baseMs
 * @param {number} maxMs
 * @param {function(): number} [random]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, baseMs, maxMs, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * RecentIds remembers the last `size` ids of a channel. Ids are opaque and
 * not ordered, so duplicates are found by membership, not by comparison.
 */
class RecentIds {
  /** @param {number} size */
  constructor(size) {
    this.size = Math.max(1, size);
    /** @type {Set<string>} */
    this.ids = new Set();
  }

  /**
   * add records id and reports whether it was new.
   * @param {string} id
   */
  add(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.size) {
      // A Set iterates in insertion order: the first one is the oldest.
      this.ids.delete(this.ids.values().next().value);
    }
    return true;
  }
}

/**
 * PgPush is one logical connection to a pgpush server. It outlives the
 * WebSocket under it: subscriptions, listeners and the resume position of
 * each channel survive reconnects. Create it, add listeners with on(),
 * subscribe, and close() it when done.
 *
 * Events emitted (listen with on()):
 * - an event name such as 'order:updated': each channel event of that name,
 *   as a {@link PgPushEvent}
 * - '*': every channel event
 * - a broadcast type such as 'new_product': that broadcast frame
 *   ({type, data}), sent to every socket with no subscription
 * - 'open': the server's "connected" frame, after each (re)connect
 * - 'close': {@link PgPushCloseInfo}, after each lost connection
 * - 'error': a {@link PgPushError} (server error frames, socket errors)
 * - 'subscribed': {channel, resumed}: delivery on channel is active;
 *   resumed is true when the server was asked to replay from an id
 * - 'unsubscribed': {channel}
 * - 'resync_required': {channel}: the last id is older than the server keeps,
 *   so events were missed; reload the state the channel describes
 * - 'message': every parsed frame, before anything else sees it
 */
export class PgPush {
  /**
   * @param {string} [url] ws:// or wss:// URL of /ws; in a browser defaults to
   *   the page's host
   * @param {PgPushOptions} [options]
   */
  constructor(url, options = {}) {
    if (!url) {
      if (typeof location === 'undefined') throw new TypeError('PgPush: url is required outside a browser');
      url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    }
    /** @type {string} */
    this.url = url;
    this.options = { ...defaults, ...options };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== 'function') {
      throw new TypeError('PgPush: no WebSocket: pass options.WebSocket (in Node: the "ws" package)');
    }
    if (options.headers && !options.WebSocket) {
      // The standard WebSocket (browsers, Node 22+) cannot send headers:
      // the cookie would be dropped silently and the server would refuse.
      throw new TypeError('PgPush: options.headers needs options.WebSocket that accepts them (the "ws" package)');
    }

    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
    /**
     * The channels the caller wants, by name. lastId is the resume position;
     * active is true between "subscribed" and the loss of the socket;
     * ownUnsubscribes counts "unsubscribed" answers still due to a filter
     * switch, which must not end the subscription.
     * @type {Map<string, {filter?: object, lastId?: string, recent: RecentIds, active: boolean, resumed: boolean, ownUnsubscribes: number}>}
     */
    this.subs = new Map();
    /** @type {Map<string, Array<{resolve: Function, reject: Function, timer: *}>>} */
    this.pendingSubscribes = new Map();
    /** @type {Map<string, Array<{resolve: Function, reject: Function, timer: *}>>} */
    this.pendingUnsubscribes = new Map();
    /**
     * Publishes by channel, oldest first: the server answers a socket's
     * frames in order, so "published" and errors match the oldest one.
     * `sent` is false while it waits in the outbox for a connection.
     * @type {Map<string, Array<{frame: object, sent: boolean, resolve: Function, reject: Function, timer: *}>>}
     */
    this.pendingPublishes = new Map();

    this.ws = null;
    this.closed = false;
    this.attempt = 0;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    /** Frames counted as duplicates and dropped, for diagnostics. */
    this.duplicates = 0;

    this.connect();
  }

  /**
   * on adds a listener and returns a function that removes it.
   * @param {string} event an event name, '*', or a lifecycle event
   * @param {function(*): void} fn
   * @returns {function(): void}
   */
  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('PgPush.on: listener must be a function');
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /**
   * off removes a listener added with on().
   * @param {string} event
   * @param {function(*): void} fn
   */
  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
  }

  /**
   * once resolves with the next value emitted for event.
   * @param {string} event
   * @returns {Promise<*>}
   */
  once(event) {
    return new Promise((resolve) => {
      const off = this.on(event, (v) => {
        off();
        resolve(v);
      });
    });
  }

  /** @type {boolean} whether the socket is open now */
  get connected() {
    return this.ws !== null && this.ws.readyState === OPEN;
  }

  /**
   * subscribe asks for the events of channel, now and after every
   * reconnect. It resolves once delivery is active and rejects when the
   * server refuses (unknown channel, not allowed) or does not answer in
   * time. Subscribing again with another filter re-subscribes from the last
   * received id, so the switch loses nothing.
   * @param {string} channel
   * @param {{filter?: Object<string, *>, snapshot?: boolean}} [opts] filter:
   *   only events whose data passes it (SPEC §3.1); snapshot: first the
   *   current rows, as 'snapshot' frames (SPEC §3.2), then the events after
   *   them; after a reconnect the subscription resumes with `since` instead
   * @returns {Promise<{channel: string}>}
   */
  subscribe(channel, opts = {}) {
    if (typeof channel !== 'string' || channel === '') {
      return handled(Promise.reject(new TypeError('PgPush.subscribe: channel must be a non-empty string')));
    }
    if (this.closed) return handled(Promise.reject(new PgPushError('client is closed', channel)));
    const filter = opts.filter && Object.keys(opts.filter).length > 0 ? opts.filter : undefined;
    const existing = this.subs.get(channel);
    const promise = this.request(this.pendingSubscribes, channel);
    if (existing) {
      if (sameFilter(existing.filter, filter)) {
        if (existing.active) this.settle(this.pendingSubscribes, channel, 'resolve', { channel });
        else if (this.connected) this.armTimers(this.pendingSubscribes, channel); // its frame is in flight
        return promise;
      }
      existing.filter = filter;
      if (this.connected) {
        // The server keeps the first filter of a subscription: end it and
        // start again from the last id, so no event falls in between.
        existing.active = false;
        existing.ownUnsubscribes++;
        this.send({ type: 'unsubscribe', channel });
        this.sendSubscribe(channel);
      }
      return promise;
    }
    this.subs.set(channel, {
      filter,
      snapshot: Boolean(opts.snapshot),
      lastId: undefined,
      recent: new RecentIds(this.options.dedupWindow),
      active: false,
      resumed: false,
      ownUnsubscribes: 0,
    });
    if (this.connected) this.sendSubscribe(channel);
    return promise;
  }

  /**
   * unsubscribe stops the events of channel and forgets its position.
   * @param {string} channel
   * @returns {Promise<{channel: string}>}
   */
  unsubscribe(channel) {
    const sub = this.subs.get(channel);
    this.subs.delete(channel);
    this.settle(this.pendingSubscribes, channel, 'reject', new PgPushError('unsubscribed before the subscription was active', channel));
    if (!sub || !this.connected) return handled(Promise.resolve({ channel }));
    const promise = this.request(this.pendingUnsubscribes, channel);
    this.send({ type: 'unsubscribe', channel });
    this.armTimers(this.pendingUnsubscribes, channel);
    return promise;
  }

  /**
   * liveRows keeps the current rows of channel: a snapshot (SPEC §3.2),
   * then every change after it applied by primary key (created and updated
   * set a row, deleted and left remove it, truncated empties them). It
   * survives reconnects (the subscription resumes after the last event)
   * and takes a fresh snapshot when the server cannot resume
   * (resync_required). onChange gets the current rows after each change,
   * in primary-key order, and the event applied (null after a snapshot).
   * It resolves once the first snapshot is in.
   * @param {string} channel
   * @param {{filter?: Object<string, *>, key?: string}} [opts] key: the
   *   primary-key column, default "id"
   * @param {function(Object<string, *>[], ?PgPushEvent): void} [onChange]
   * @returns {Promise<{rows: Object<string, *>[], close: function(): Promise<void>}>}
   */
  liveRows(channel, opts = {}, onChange = () => {}) {
    const key = opts?.key ?? 'id';
    /** @type {Map<string, Object<string, *>>} */
    const rows = new Map();
    /** @type {?Map<string, Object<string, *>>} a snapshot arriving */
    let incoming = null;
    const current = () => [...rows.values()].sort((a, b) => compareKeys(a[key], b[key]));
    let settle;
    const ready = new Promise((resolve, reject) => (settle = { resolve, reject }));
    const handle = {
      get rows() {
        return current();
      },
      close: async () => {
        for (const off of offs) off();
        await this.unsubscribe(channel);
      },
    };
    const offs = [
      this.on('snapshot', (m) => {
        if (m.channel !== channel) return;
        incoming ??= new Map();
        for (const row of m.rows) incoming.set(keyString(row[key]), row);
        if (m.more) return;
        rows.clear();
        for (const [k, row] of incoming) rows.set(k, row);
        incoming = null;
        onChange(current(), null);
        settle.resolve(handle);
      }),
      this.on('*', (ev) => {
        if (ev.channel !== channel) return;
        const action = ev.event.slice(ev.event.lastIndexOf(':') + 1);
        const k = keyString(ev.data?.[key]);
        switch (action) {
          case 'created':
          case 'updated': {
            const { changed_fields: _, ...row } = ev.data;
            rows.set(k, row);
            break;
          }
          case 'deleted':
          case 'left':
            rows.delete(k);
            break;
          case 'truncated':
            rows.clear();
            break;
          default:
            return; // a custom event on the channel is not a row change
        }
        onChange(current(), ev);
      }),
      this.on('resync_required', (m) => {
        if (m.channel === channel) this.resnapshot(channel);
      }),
    ];
    this.subscribe(channel, { filter: opts?.filter, snapshot: true }).catch((err) => {
      for (const off of offs) off();
      settle.reject(err);
    });
    return ready;
  }

  /**
   * resnapshot starts a snapshot subscription afresh: the events after its
   * last one are gone from the server's log.
   * @param {string} channel
   */
  resnapshot(channel) {
    const sub = this.subs.get(channel);
    if (!sub) return;
    sub.snapshot = true;
    sub.lastId = undefined;
    sub.recent = new RecentIds(this.options.dedupWindow);
    if (this.connected) this.sendSubscribe(channel);
  }

  /**
   * publish sends a custom event to every subscriber of channel (it needs
   * the publish grant). While the client is reconnecting the event waits
   * to be sent. Resolves with the server's answer, {channel, id}.
   * A publish in flight when the connection drops is rejected, since
   * whether the server stored it is unknown.
   * @param {string} channel
   * @param {string} event
   * @param {Object<string, *>} [data]
   * @returns {Promise<{channel: string, id: string}>}
   */
  publish(channel, event, data = {}) {
    if (!channel || !event) {
      return handled(Promise.reject(new TypeError('PgPush.publish: channel and event are required')));
    }
    if (this.closed) return handled(Promise.reject(new PgPushError('client is closed', channel)));
    const frame = { type: 'publish', channel, event, data };
    const promise = new Promise((resolve, reject) => {
      const entry = { frame, sent: false, resolve, reject, timer: null };
      queueFor(this.pendingPublishes, channel).push(entry);
      if (this.connected) this.sendPublish(channel, entry);
    });
    return handled(promise);
  }

  /**
   * close ends the connection for good: no reconnect, pending requests
   * are rejected, timers stop.
   */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const ws = this.ws;
    this.dropSocket();
    if (ws) {
      try {
        ws.close(1000, 'client closed');
      } catch {
        // Already closing.
      }
    }
    this.rejectAll(new PgPushError('client is closed'));
    this.emit('close', { code: 1000, reason: 'client closed', willReconnect: false });
  }

  // --- internals ---

  connect() {
    let ws;
    try {
      ws = this.options.headers
        ? new this.WebSocket(this.url, this.options.protocols ?? [], { headers: this.options.headers })
        : this.options.protocols
          ? new this.WebSocket(this.url, this.options.protocols)
          : new this.WebSocket(this.url);
    } catch (err) {
      this.emit('error', toError(err));
      this.scheduleReconnect(1006, 'connect failed');
      return;
    }
    this.ws = ws;
    // Handlers check that their socket is still the current one: a socket
    // given up on (no pong) may still report events later.
    ws.onopen = () => {
      if (this.ws === ws) this.onOpen();
    };
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.onFrame(ev.data);
    };
    ws.onerror = (ev) => {
      if (this.ws === ws) this.emit('error', toError(ev?.error ?? ev?.message ?? 'WebSocket error'));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.dropSocket();
      this.scheduleReconnect(ev?.code ?? 1006, ev?.reason ?? '');
    };
  }

  onOpen() {
    for (const channel of this.subs.keys()) this.sendSubscribe(channel);
    for (const queue of this.pendingPublishes.values()) {
      for (const entry of queue) {
        if (!entry.sent) this.sendPublish(entry.frame.channel, entry);
      }
    }
    this.startHeartbeat();
  }

  sendSubscribe(channel) {
    const sub = this.subs.get(channel);
    if (!sub) return;
    const frame = { type: 'subscribe', channel };
    if (sub.lastId !== undefined) frame.since = sub.lastId;
    else if (sub.snapshot) frame.snapshot = true;
    if (sub.filter) frame.filter = sub.filter;
    sub.resumed = sub.lastId !== undefined;
    this.send(frame);
    this.armTimers(this.pendingSubscribes, channel);
  }

  sendPublish(channel, entry) {
    entry.sent = true;
    this.send(entry.frame);
    entry.timer = setTimeout(() => {
      removeEntry(this.pendingPublishes, channel, entry);
      entry.reject(new PgPushError('publish: no answer from the server in time', channel));
    }, this.options.requestTimeoutMs);
  }

  /** @param {*} raw */
  onFrame(raw) {
    let msg;
    try {
      msg = JSON.parse(typeof raw === 'string' ? raw : String(raw));
    } catch {
      this.emit('error', new PgPushError('malformed frame from the server'));
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    this.emit('message', msg);

    if (typeof msg.event === 'string' && typeof msg.channel === 'string' && msg.id !== undefined) {
      this.onEvent(msg);
      return;
    }
    switch (msg.type) {
      case 'connected':
        // A socket the server accepted: the next drop starts backoff afresh.
        this.attempt = 0;
        this.emit('open', msg);
        return;
      case 'pong':
        clearTimeout(this.pongTimer);
        this.pongTimer = null;
        return;
      case 'subscribed': {
        const sub = this.subs.get(msg.channel);
        if (!sub) return; // unsubscribed meanwhile
        sub.active = true;
        // A channel with no event yet resumes from the server's position
        // at subscription time, so a drop before its first event loses nothing.
        if (sub.lastId === undefined && typeof msg.position === 'string') sub.lastId = msg.position;
        this.settle(this.pendingSubscribes, msg.channel, 'resolve', { channel: msg.channel });
        this.emit('subscribed', { channel: msg.channel, resumed: Boolean(sub.resumed) });
        return;
      }
      case 'unsubscribed': {
        const sub = this.subs.get(msg.channel);
        if (sub && sub.ownUnsubscribes > 0) {
          sub.ownUnsubscribes--; // a filter switch, which goes on
          return;
        }
        // Asked for, or the server ended it (a revoked grant): forget it.
        if (sub && sub.active && !this.pendingUnsubscribes.has(msg.channel)) this.subs.delete(msg.channel);
        this.settle(this.pendingUnsubscribes, msg.channel, 'resolve', { channel: msg.channel });
        this.emit('unsubscribed', { channel: msg.channel });
        return;
      }
      case 'published':
        this.settlePublish(msg.channel, 'resolve', { channel: msg.channel, id: String(msg.id) });
        return;
      case 'resync_required':
        this.emit('resync_required', { channel: msg.channel });
        return;
      case 'error':
        this.onServerError(msg);
        return;
      default:
        if (typeof msg.type === 'string') this.emit(msg.type, msg);
    }
  }

  /** @param {PgPushEvent} ev */
  onEvent(ev) {
    ev.id = String(ev.id);
    const sub = this.subs.get(ev.channel);
    if (sub) {
      if (!sub.recent.add(ev.id)) {
        this.duplicates++;
        return;
      }
      sub.lastId = ev.id;
    }
    this.emit(ev.event, ev);
    this.emit('*', ev);
  }

  onServerError(msg) {
    const err = new PgPushError(String(msg.message ?? 'server error'), msg.channel);
    const channel = msg.channel;
    if (channel !== undefined) {
      // A refused subscribe ends the subscription: retrying on every
      // reconnect would only be refused again.
      const sub = this.subs.get(channel);
      if (sub && !sub.active && sub.ownUnsubscribes === 0) {
        this.subs.delete(channel);
        this.settle(this.pendingSubscribes, channel, 'reject', err);
      } else if (this.pendingPublishes.get(channel)?.some((e) => e.sent)) {
        this.settlePublish(channel, 'reject', err);
      }
    }
    this.emit('error', err);
  }

  /**
   * request adds a pending request for channel. Its timeout starts when
   * the frame is sent (armTimers): while reconnecting it just waits.
   */
  request(pending, channel) {
    const promise = new Promise((resolve, reject) => {
      queueFor(pending, channel).push({ resolve, reject, timer: null });
    });
    return handled(promise);
  }

  armTimers(pending, channel) {
    for (const entry of pending.get(channel) ?? []) {
      if (entry.timer !== null) continue;
      entry.timer = setTimeout(() => {
        removeEntry(pending, channel, entry);
        entry.reject(new PgPushError('no answer from the server in time', channel));
      }, this.options.requestTimeoutMs);
    }
  }

  /** settle resolves or rejects every pending request of channel. */
  settle(pending, channel, how, value) {
    const queue = pending.get(channel);
    if (!queue) return;
    pending.delete(channel);
    for (const entry of queue) {
      clearTimeout(entry.timer);
      entry[how](value);
    }
  }

  /** settlePublish settles the oldest publish sent on channel. */
  settlePublish(channel, how, value) {
    const queue = this.pendingPublishes.get(channel);
    const i = queue ? queue.findIndex((e) => e.sent) : -1;
    if (i < 0) return;
    const [entry] = queue.splice(i, 1);
    if (queue.length === 0) this.pendingPublishes.delete(channel);
    clearTimeout(entry.timer);
    entry[how](value);
  }

  rejectAll(err) {
    for (const pending of [this.pendingSubscribes, this.pendingUnsubscribes]) {
      for (const channel of [...pending.keys()]) this.settle(pending, channel, 'reject', err);
    }
    for (const [channel, queue] of this.pendingPublishes) {
      for (const entry of queue) {
        clearTimeout(entry.timer);
        entry.reject(new PgPushError(err.message, channel));
      }
    }
    this.pendingPublishes.clear();
  }

  send(frame) {
    try {
      this.ws.send(JSON.stringify(frame));
    } catch (err) {
      this.emit('error', toError(err));
    }
  }

  startHeartbeat() {
    const interval = this.options.pingIntervalMs;
    if (!(interval > 0)) return;
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (!this.connected || this.pongTimer !== null) return;
      this.pongTimer = setTimeout(() => this.onHeartbeatTimeout(), this.options.pongTimeoutMs);
      this.send({ type: 'ping' });
    }, interval);
  }

  onHeartbeatTimeout() {
    const ws = this.ws;
    this.dropSocket();
    if (ws) {
      try {
        // terminate (the ws package) drops at once; a browser socket can
        // only start the closing handshake, which a dead peer never ends.
        if (typeof ws.terminate === 'function') ws.terminate();
        else ws.close(CLOSE_HEARTBEAT_TIMEOUT, 'heartbeat timeout');
      } catch {
        // Already closed.
      }
    }
    this.scheduleReconnect(CLOSE_HEARTBEAT_TIMEOUT, 'heartbeat timeout');
  }

  /**
   * dropSocket forgets the current socket: its later events are ignored,
   * heartbeats stop, and what was in flight on it is settled.
   */
  dropSocket() {
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = null;
    this.pongTimer = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      // Some socket implementations emit 'error' after the handlers are
      // gone; the ws package would throw it as an uncaught exception.
      if (typeof ws.on === 'function') ws.on('error', () => {});
    }
    for (const sub of this.subs.values()) {
      sub.active = false;
      sub.ownUnsubscribes = 0;
    }
    // Subscribes are sent again on the next socket; their timeouts restart.
    for (const queue of this.pendingSubscribes.values()) {
      for (const entry of queue) {
        clearTimeout(entry.timer);
        entry.timer = null;
      }
    }
    // Unsubscribes in flight are done: the server forgets a closed
    // socket's subscriptions, and we no longer hold those channels.
    for (const channel of [...this.pendingUnsubscribes.keys()]) {
      this.settle(this.pendingUnsubscribes, channel, 'resolve', { channel });
    }
    for (const [channel, queue] of this.pendingPublishes) {
      const kept = [];
      for (const entry of queue) {
        if (!entry.sent) {
          kept.push(entry);
          continue;
        }
        clearTimeout(entry.timer);
        entry.reject(new PgPushError('connection lost before the server answered', channel));
      }
      if (kept.length > 0) this.pendingPublishes.set(channel, kept);
      else this.pendingPublishes.delete(channel);
    }
  }

  scheduleReconnect(code, reason) {
    if (this.closed) return;
    // 1008: no session, or the session ended (logout): a new socket would
    // be refused the same way. The caller logs in again and reconnects.
    const willReconnect = this.options.reconnect && code !== CLOSE_POLICY_VIOLATION;
    if (!willReconnect) {
      this.closed = true;
      this.rejectAll(new PgPushError(`connection closed (${code}${reason ? ': ' + reason : ''})`));
      this.emit('close', { code, reason, willReconnect: false });
      return;
    }
    const delayMs = backoffDelay(this.attempt, this.options.backoffBaseMs, this.options.backoffMaxMs, this.options.random);
    this.attempt++;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closed) this.connect();
    }, delayMs);
    this.emit('close', { code, reason, willReconnect: true, delayMs });
  }

  emit(event, value) {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (err) {
        // A throwing listener must not break delivery to the others or the
        // client's own state; report it without blocking.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}

/** handled marks promise as handled so an ignored rejection does not kill a
 * Node process; awaiting it still throws. */
function handled(promise) {
  promise.catch(() => {});
  return promise;
}

function queueFor(map, key) {
  let q = map.get(key);
  if (!q) map.set(key, (q = []));
  return q;
}

function removeEntry(map, key, entry) {
  const q = map.get(key);
  if (!q) return;
  const i = q.indexOf(entry);
  if (i >= 0) q.splice(i, 1);
  if (q.length === 0) map.delete(key);
}

/** keyString makes a primary-key value a Map key (45 and "45" alike). */
function keyString(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** compareKeys orders primary keys: numbers by value, others as text. */
function compareKeys(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function sameFilter(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

function toError(err) {
  if (err instanceof Error) return err;
  return new PgPushError(typeof err === 'string' ? err : 'WebSocket error');
}

export default PgPush;
