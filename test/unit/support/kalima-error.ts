import { expect } from 'vitest';
import { KalimaError, type KalimaErrorCode } from '../../../src/errors.ts';

/** Runs `action`, asserts it throws a KalimaError with exactly `code`, and returns the error. */
export function expectKalimaError(action: () => unknown, code: KalimaErrorCode): KalimaError {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `expected ${code}, nothing was thrown`).toBeDefined();
  expect(thrown).toBeInstanceOf(KalimaError);
  expect((thrown as KalimaError).code).toBe(code);
  return thrown as KalimaError;
}

/** The outcome of an action as data: 'ok' or the KalimaError code; anything else is rethrown. */
export function outcomeOf(action: () => unknown): 'ok' | KalimaErrorCode {
  try {
    action();
    return 'ok';
  } catch (error) {
    if (error instanceof KalimaError) return error.code;
    throw error;
  }
}
