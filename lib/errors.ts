// Error helpers: every error node-lws raises carries a `code`.

export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  address?: string;
  port?: number;
  attempts?: number;
}

export function codedError(code: string, message: string): Error & { code: string } {
  const err = new Error(message) as Error & { code: string };
  err.code = code;
  return err;
}

export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  const err = new TypeError(
    `The "${name}" option must be ${expected}. Received ${describe(actual)}`,
  ) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  const err = new RangeError(
    `The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`,
  ) as RangeError & { code: string };
  err.code = 'ERR_OUT_OF_RANGE';
  return err;
}

export function invalidArgValue(name: string, reason: string, actual: unknown): TypeError {
  const err = new TypeError(
    `The "${name}" option ${reason}. Received ${describe(actual)}`,
  ) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/** An AbortError as Node's own APIs raise it (name 'AbortError', code 'ABORT_ERR'). */
export function abortError(signal?: AbortSignal): Error {
  const err = codedError('ABORT_ERR', 'The operation was aborted');
  err.name = 'AbortError';
  if (signal && signal.reason !== undefined) (err as Error).cause = signal.reason;
  return err;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return `'${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${v}`;
  if (typeof v === 'function') return 'function';
  if (typeof v === 'object') return `an instance of ${v.constructor?.name ?? 'Object'}`;
  return typeof v;
}
