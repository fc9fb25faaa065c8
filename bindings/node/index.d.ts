// Type declarations of the hearth npm package (hand-written; keep in step
// with index.js and lib/*.js — test/types.test.js checks the export names).

import { EventEmitter } from 'node:events';

/** The protocol's stable error codes. */
export type ProtocolCode =
  | 'not_found'
  | 'invalid_input'
  | 'too_large'
  | 'conflict'
  | 'unavailable'
  | 'timeout'
  | 'permission_denied'
  | 'internal'
  | 'unknown_operation'
  | 'corrupt'
  | 'locked'
  | 'rate_limited'
  | 'cancelled'
  | 'lagged'
  | 'storage_full';

/** Codes of conditions of the channel or the package itself. */
export type PackageCode =
  | 'ECHANNEL_NOT_FOUND'
  | 'ECHANNEL_IN_USE'
  | 'EINVALID_CHANNEL'
  | 'EUNSAFE_DIRECTORY'
  | 'EDISCONNECTED'
  | 'ECLOSED'
  | 'EPROTOCOL'
  | 'ESERVER_START'
  | 'ESERVER_STOPPED'
  | 'EADDON_MISSING'
  | 'ABORT_ERR';

/** Every error the package throws. `name` is "AbortError" for ABORT_ERR. */
export class HearthError extends Error {
  constructor(code: PackageCode | ProtocolCode, message: string, options?: { cause?: unknown });
  readonly code: PackageCode | ProtocolCode;
  /** Always one of the protocol's codes (e.g. ECHANNEL_NOT_FOUND → "unavailable"). */
  readonly protocolCode: ProtocolCode;
}

export const PROTOCOL_CODES: readonly ProtocolCode[];

/** The addon's version. */
export const version: string;

/** Per-call options. */
export interface CallOptions {
  /** Milliseconds before the call fails with code "timeout" (default: the client's, 30 s; longer than 100 years counts as 100 years). */
  timeout?: number;
  /** Aborting it rejects the call with an AbortError (code ABORT_ERR). */
  signal?: AbortSignal;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface Doc<T = JsonObject> {
  id: string;
  data: T;
}

export interface DocWithMetadata<T = JsonObject> {
  id: string;
  /** null for a deleted document. */
  data: T | null;
  metadata: {
    seq: number;
    /** Hybrid logical clock stamp (a 64-bit integer as a decimal string). */
    hlc: string;
    /** The writing replica (a 64-bit integer as a decimal string). */
    replica: string;
    /** Milliseconds since the epoch. */
    updatedAt: number;
    deleted: boolean;
  };
}

export interface Hit<T = JsonObject> extends Doc<T> {
  /** Relevance; higher is better. */
  score: number;
}

/** A page of list() or query(): the documents, and the cursor to continue from. */
export type Page<T = JsonObject> = Array<Doc<T>> & {
  /** Set when the page stopped at its limit: pass it as `cursor` for the next page. */
  readonly cursor: string | null;
};

export interface Change<T = JsonObject> {
  seq: number;
  id: string;
  kind: 'put' | 'patch' | 'delete';
  hlc: string;
  replica: string;
  /** The whole document for a put, the fields written for a patch, null for a delete. */
  data: T | null;
}

export interface ListOptions extends CallOptions {
  prefix?: string;
  type?: string;
  limit?: number;
  cursor?: string | null;
}

export interface QueryOptions extends CallOptions {
  limit?: number;
  cursor?: string | null;
}

export interface SearchOptions extends CallOptions {
  limit?: number;
}

export interface WatchOptions {
  /** Only ids starting with this. */
  prefix?: string;
  /** Start at this sequence number instead of now (0: the whole change log). */
  fromSeq?: number;
  /** Aborting it ends the iteration with an AbortError. */
  signal?: AbortSignal;
}

export type BatchOp =
  | { op: 'put'; id: string; data: JsonObject }
  | { op: 'patch'; id: string; fields: JsonObject }
  | { op: 'delete'; id: string };

export interface LocalFirstOptions {
  /** "auto" (default): IPC when HEARTH_IPC/PLURESDB_IPC=true or a server answers; "ipc"; "network" (not available yet). */
  mode?: 'auto' | 'ipc' | 'network';
  /** The channel (default $HEARTH_CHANNEL, else "hearth"). */
  channelName?: string;
  /** Alias of channelName. */
  channel?: string;
  /** Look for the channel's socket here instead of $XDG_RUNTIME_DIR/hearth. */
  socketDir?: string;
  /** Connect to this socket path instead of the channel's. */
  socketPath?: string;
  /** Default per-call timeout in ms (30 000; longer than 100 years counts as 100 years). */
  timeout?: number;
  /** Connecting and the handshake, in ms (10 000). */
  connectTimeout?: number;
  /** How long a watch keeps trying to resume after the server went away, in ms (30 000). */
  resumeTimeout?: number;
  /** Events buffered per subscription (4096). */
  eventBuffer?: number;
  /** false: run point operations off the main thread too (slower; never blocks for a round trip). Default true. */
  fastPath?: boolean;
  /** Longest a fast-path call waits on the main thread, in ms (1); a later answer comes through a pending promise. */
  fastPathBudget?: number;
  /**
   * Longest a fast-path call goes on waiting on its thread, past the budget, while the server
   * answers it only in its turn (other connections of this process are busy), in ms: 0 on the
   * main thread, 50 in a worker thread.
   */
  fastPathTurnWait?: number;
}

/** An async iterator over a stream; `close()` ends it. */
export interface HearthStream<T> extends AsyncIterableIterator<T> {
  close(): void;
}

export interface DocStream<T = JsonObject> extends HearthStream<Doc<T>> {
  /** After the end: where a list that stopped at its limit continues. */
  readonly cursor?: string | null;
}

export interface TopicSubscription extends EventEmitter {
  readonly pattern: string;
  /** Events lost to full buffers so far. */
  readonly dropped: number;
  unsubscribe(): Promise<void>;
  /** The connection went away: events published until "resubscribed" are missed (topic events are not stored). */
  on(event: 'lost', listener: (error: HearthError) => void): this;
  on(event: 'resubscribed', listener: () => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export class LocalFirst extends EventEmitter {
  constructor(options?: LocalFirstOptions);
  readonly mode: 'auto' | 'ipc' | 'network';
  readonly channelName: string;
  /** "shm" (shared memory), "socket", … or null when not connected. */
  readonly transport: string | null;
  connect(): Promise<void>;
  put(id: string, data: JsonObject | object, options?: CallOptions): Promise<number>;
  patch(id: string, fields: JsonObject | object, options?: CallOptions): Promise<number>;
  get<T = JsonObject>(id: string, options?: CallOptions): Promise<T | null>;
  getWithMetadata<T = JsonObject>(id: string, options?: CallOptions): Promise<DocWithMetadata<T> | null>;
  delete(id: string, options?: CallOptions): Promise<boolean>;
  list<T = JsonObject>(options?: ListOptions): Promise<Page<T>>;
  iterate<T = JsonObject>(options?: ListOptions): DocStream<T>;
  query<T = JsonObject>(filter: JsonObject | object, options?: QueryOptions): Promise<Page<T>>;
  search<T = JsonObject>(text: string, options?: SearchOptions): Promise<Array<Hit<T>>>;
  batch(ops: BatchOp[], options?: CallOptions): Promise<{ firstSeq: number; lastSeq: number }>;
  call<R = Json>(name: string, payload?: unknown, options?: CallOptions): Promise<R>;
  publish(topic: string, payload?: unknown, options?: CallOptions): Promise<number>;
  subscribe<P = Json>(pattern: string, listener: (payload: P, topic: string) => void): Promise<TopicSubscription>;
  watch<T = JsonObject>(options?: WatchOptions): HearthStream<Change<T>>;
  stats(options?: CallOptions): Promise<{ store: Record<string, unknown>; server: Record<string, unknown> }>;
  changesSince<T = JsonObject>(after: number, options?: CallOptions & { limit?: number }): Promise<Array<Change<T>>>;
  ping(options?: CallOptions): Promise<void>;
  close(): Promise<void>;

  on(event: 'change', listener: (change: Change) => void): this;
  on(event: 'error', listener: (error: HearthError) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** PluresDB's name for LocalFirst. */
export { LocalFirst as PluresDBLocalFirst };

/** Sets how long (ms) fast-path calls may run back to back before the event loop gets a turn (default 2). */
export function setMaxSyncMs(ms: number): void;

// --- startServer ----------------------------------------------------------

export interface StartServerOptions {
  channel: string;
  dataDir: string;
  /** Restarts after a crash before giving up (default 5). */
  maxRestarts?: number;
  /** Restart delay: initial ms (100), doubling up to max ms (5000). */
  backoff?: { initial?: number; max?: number };
  /** The hearth binary (default: $HEARTH_BIN, else the one `npm install` built). */
  binary?: string;
  /** Extra `hearth serve` arguments. */
  args?: string[];
  durability?: 'journal' | 'fsync';
  /** Directory of the channel's socket (`--socket-dir`); pair with LocalFirst's `socketDir`. */
  socketDir?: string;
  /** Bytes of each of a shared-memory connection's two rings (`--shm-ring-bytes`): a power of two from 4096 to 67108864 (default 262144). */
  shmRingBytes?: number;
  /** false: offer no shared memory, every connection stays on the socket (`--no-shm`; default true). */
  sharedMemory?: boolean;
  /** Linux: the server stops itself when this process dies, even by SIGKILL (default true). */
  exitWithParent?: boolean;
  /** Extra environment for the server. */
  env?: Record<string, string>;
  /** ms to wait for the ready line before giving up (30 000; 0 = no limit; past 2^31 - 1, about 24.8 days, kept at that). */
  readyTimeout?: number;
  /** ms between SIGTERM and SIGKILL in stop() (5000; past 2^31 - 1, about 24.8 days, kept at that). */
  stopTimeout?: number;
  /** "forward" (default: 'log' events and stderr), "events" ('log' events only) or "ignore". */
  logs?: 'forward' | 'events' | 'ignore';
}

export interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Whether stop() asked for it. */
  expected?: boolean;
}

export class HearthServer extends EventEmitter {
  readonly channel: string;
  readonly dataDir: string;
  readonly restarts: number;
  readonly socketPath: string | null;
  readonly pid: number | null;
  readonly running: boolean;
  stop(options?: { timeout?: number }): Promise<ServerExit>;

  on(event: 'ready', listener: (info: { channel: string; socket: string; pid: number }) => void): this;
  on(event: 'exit', listener: (info: ServerExit) => void): this;
  on(event: 'restart', listener: (n: number) => void): this;
  on(event: 'log', listener: (entry: { stream: 'stdout' | 'stderr'; line: string }) => void): this;
  on(event: 'error', listener: (error: HearthError) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export function startServer(options: StartServerOptions): Promise<HearthServer>;

// --- serve ------------------------------------------------------------------

export interface HandlerContext {
  /** The calling connection's id (unique for the host's lifetime). */
  callerId: number;
  connectionId: number;
  pid: number | null;
  uid: number | null;
  transport: string;
  /** The handler name called. */
  name: string;
  /** Publishes an event (same as host.emit). */
  emit(topic: string, payload?: unknown): number;
}

export type Handler<P = any, R = any> = (this: HandlerContext, payload: P, ctx: HandlerContext) => R | Promise<R>;

export interface ServeOptions {
  channel: string;
  /** Where the documents live; a temporary directory (removed on close) when absent. */
  dataDir?: string;
  /** Put the socket here instead of $XDG_RUNTIME_DIR/hearth. */
  socketDir?: string;
  durability?: 'journal' | 'fsync';
  /** Handlers served from the start. */
  handlers?: Record<string, Handler>;
  /** ms close() waits for calls in flight (10 000). */
  shutdownTimeout?: number;
}

export class Host {
  readonly channel: string;
  readonly socketPath: string | null;
  handle<P = any, R = any>(name: string, handler: Handler<P, R>): Promise<void>;
  unhandle(name: string): void;
  /** Publishes an event; returns how many subscriptions received it. */
  emit(topic: string, payload?: unknown): number;
  stats(): { connections: number; change_subscriptions: number; topic_subscriptions: number; refused_process_subscriptions: number; refused_server_subscriptions: number; requests: number; stalled_disconnects: number; partial_disconnects: number; refused_server_full: number; refused_process_limit: number; handshakes: number; refused_process_handshakes: number; refused_server_handshakes: number; shm_connections: number; shm_polled: number; shm_handoffs: number; shm_handoffs_missed: number; shm_holders_asleep: number; shm_turn_waits: number; shm_lent: number; shm_answers_queued: number; shm_ring_bytes: number; shm_rings_capped: number; streams_waited: number; streams_waited_process: number; streams_waited_server: number; streams_running: number } | null;
  close(): Promise<void>;
}

export function serve(options: ServeOptions): Promise<Host>;
