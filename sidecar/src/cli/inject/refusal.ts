/**
 * A document `inject` will not change, with the reason a user can act on. Exit status 1: the
 * input is the problem, not the command line.
 */
export class InjectRefusal extends Error {
  override readonly name = 'InjectRefusal'
}

/** A command line `inject` cannot act on. Exit status 2, with a hint. */
export class InjectUsageError extends Error {
  override readonly name = 'InjectUsageError'
}
