/** Errors a driver throws so the control plane can map them without knowing the driver. */

export class DriverError extends Error {
  /** Whether running the same operation again later may succeed. */
  readonly retryable: boolean;
  constructor(message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.retryable = options.retryable ?? false;
  }
}

/** Another operation holds the stack (Pulumi `ConcurrentUpdateError`). Retryable; 409 at the API. */
export class StackBusyError extends DriverError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { retryable: true, cause: options.cause });
  }
}

/** The stack or workspace does not exist (Pulumi `StackNotFoundError`). 404 at the API. */
export class StackNotFoundError extends DriverError {}

/** The operation was cancelled through its AbortSignal. */
export class OperationCanceledError extends DriverError {}
