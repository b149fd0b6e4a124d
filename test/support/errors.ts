// What a synchronous call throws, for tests of coded errors.
import { expect } from 'vitest';
import { KalimaError } from '../../src/errors.ts';

/** The code and details of the KalimaError `run` throws; fails the test if it returns or throws something else. */
export function thrownError(run: () => unknown): { code: string; details: Record<string, unknown> } {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(KalimaError);
    return { code: (error as KalimaError).code, details: (error as KalimaError).details };
  }
  throw new Error('expected an error');
}

/** The code of what `run` throws, or undefined if it returns. */
export function codeOf(run: () => unknown): string | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
}
