"""Real servers on loopback for the tests: each starts on a free port in a temp dir
and stops by itself. Under ``CI=true`` a missing server program fails the test
instead of skipping it."""
