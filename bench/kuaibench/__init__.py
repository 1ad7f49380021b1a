"""bench/run as a package: common (paths, constants, process helpers), peers
(the servers and their configs), runner (builds, wrk runs, the case loops),
stats (medians, peers, targets), report (RESULTS.md, charts) and cli (the
command line)."""
