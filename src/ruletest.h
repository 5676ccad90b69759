/*
 * ruletest.h — `iiotgw test FILE...`: rule test files, run in-process against the real
 * gateway path.
 *
 * A test file holds blocks in the style of lua-nginx-module's `t/` test files:
 *
 *   === TEST 1: name
 *   --- rule: ../default.lua          rule file, relative to the test file
 *   --- config                        optional KEY = VALUE lines (the -o keys)
 *   --- input                         receiver lines, and @advance/@every/@tick/@file steps
 *   --- publishes / points / deadletters / alerts    what must come out, in order
 *
 * (the format reference is docs/rules.md, "Rule tests"). Each test builds an embedded gateway
 * (gateway_init_embedded: the same outputs, dead-letter and rule engine as the daemon, with
 * the --dry-run printer writing into memory) and feeds it the input through the real framer
 * on a virtual clock: rx_ns and on_tick's `now` are virtual, ticks run every tick_interval of
 * virtual time, so a 120 s watchdog is tested in microseconds. What the printer wrote is
 * sorted into the four lists and compared with the expectations (exact lines, or Lua patterns
 * after "~ "); a difference is shown as a diff of expected against got.
 *
 * Output on stdout: "# FILE" before a file's tests, one "ok N - name" / "FAIL N - name" line
 * per test (a failure followed by its indented diff), and "N passed, M failed" last. Errors in
 * a test file ("FILE:LINE: message") go to stderr; that file's tests are not run.
 */
#ifndef IIOTGW_RULETEST_H
#define IIOTGW_RULETEST_H

/* Exit codes of `iiotgw test`. */
#define RULETEST_OK    0 /* every test passed */
#define RULETEST_FAIL  1 /* at least one test failed */
#define RULETEST_USAGE 2 /* bad command line, or a test file that cannot be read or parsed */

/*
 * Run `iiotgw test ARGS...`: argv[0] is "test", the rest are test files (or -h/--help).
 * Returns a RULETEST_* exit code. Not re-entrant (it sets the log level).
 */
int ruletest_main(int argc, char **argv);

#endif
