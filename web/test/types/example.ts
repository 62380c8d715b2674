// A small typed use of pgpush.js, checked with `tsc --noEmit` by
// web/types_test.go against static/pgpush.d.ts. Never run: it only has to
// type-check, and the @ts-expect-error lines must stay errors.

import PgPushDefault, {
  CLOSE_HEARTBEAT_TIMEOUT,
  CLOSE_POLICY_VIOLATION,
  PgPush,
  PgPushError,
  backoffDelay,
  type Filter,
  type LiveRows,
  type PgPushCloseInfo,
  type PgPushEvent,
  type ServerFrame,
} from '../../static/pgpush.js';

interface Order {
  id: number;
  order_number: string;
  status: 'pending' | 'paid' | 'shipped';
  total: number;
  customer_id: number | null;
}

export async function example(): Promise<void> {
  const push = new PgPush('ws://localhost:3000/ws', {
    WebSocket, // the standard one, from the DOM library
    backoffBaseMs: 250,
    backoffMaxMs: 10_000,
    pingIntervalMs: 25_000,
    random: Math.random,
  });
  const same: PgPush = new PgPushDefault();

  // Channel events, with the row typed.
  const off = push.on<Order>('order:updated', (ev) => {
    const status: Order['status'] = ev.data.status;
    const changed: Order['status'] | undefined = ev.data.changed_fields?.status;
    const id: string = ev.id;
    console.log(status, changed, id, ev.channel, ev.event, ev.timestamp);
  });
  off();
  push.on('*', (ev: PgPushEvent) => console.log(ev.data['anything']));

  // Lifecycle events get their own payloads.
  push.on('open', (frame) => console.log(frame.userId ?? 'anonymous', frame.message));
  push.on('close', (info: PgPushCloseInfo) => {
    if (info.code === CLOSE_POLICY_VIOLATION) console.log('log in again');
    if (info.code === CLOSE_HEARTBEAT_TIMEOUT || info.willReconnect) console.log(info.delayMs);
  });
  push.on('error', (err) => console.log(err.message, err instanceof PgPushError ? err.channel : undefined));
  push.on('subscribed', ({ channel, resumed }) => console.log(channel, resumed));
  push.on('resync_required', ({ channel }) => console.log('reload', channel));
  push.on('message', (frame: ServerFrame) => console.log(frame));
  // A broadcast frame: {type, data}.
  push.on<{ sku: string }>('new_product', (frame) => console.log(frame.type, frame.data?.sku));

  const filter: Filter = {
    status: { in: ['paid', 'shipped'] },
    total: { gte: 100 },
    or: [{ customer_id: 45 }, { customer_id: { exists: false } }],
    not: { order_number: { prefix: 'TEST-' } },
  };
  const sub: { channel: string } = await push.subscribe('order_changes', { filter });
  await push.subscribe('product_changes', { snapshot: true });
  const published: { channel: string; id: string } = await push.publish('alerts', 'stock:low', { sku: 'A1' });
  const next: PgPushEvent<Order> = await push.once<Order>('order:created');
  const opened = await push.once('open');
  console.log(sub.channel, published.id, next.data.total, opened.type, push.connected, push.duplicates, same.url);

  const live: LiveRows<Order> = await push.liveRows<Order>('order_changes', { filter: { status: 'paid' }, key: 'id' }, (rows, ev) => {
    const total = rows.reduce((sum, r) => sum + r.total, 0);
    console.log(total, ev === null ? 'snapshot' : ev.event);
  });
  console.log(live.rows.length);
  await live.close();

  await push.unsubscribe('order_changes');
  const delay: number = backoffDelay(3, 250, 10_000);
  console.log(delay);
  push.close();

  // What the declarations must refuse:
  // @ts-expect-error: a channel is a string
  await push.subscribe(42);
  // @ts-expect-error: filter operators are the ones of SPEC §3.1
  await push.subscribe('order_changes', { filter: { total: { between: [1, 2] } } });
  // @ts-expect-error: 'open' listeners get the connected frame, which has no channel
  push.on('open', (frame) => frame.channel);
  // @ts-expect-error: event ids are strings
  push.on<Order>('order:created', (ev) => ev.id.toFixed());
  // @ts-expect-error: data is typed by the row
  push.on<Order>('order:created', (ev) => ev.data.status.toFixed());
  // @ts-expect-error: the key of liveRows is a column of the row
  await push.liveRows<Order>('order_changes', { key: 'nope' }, () => {});
  // @ts-expect-error: unknown option
  new PgPush('ws://x/ws', { reconnectDelay: 5 });
}
