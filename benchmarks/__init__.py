"""The figures sokures is held to, measured on this machine (``python -m benchmarks``).

One module per benchmark:

* ``dkim_signing``: DKIM signatures/s against raw ``cryptography`` RSA-2048, same run.
* ``e2e``: 20,000 messages end to end against Postfix + OpenDKIM, same run.
* ``memory``: peak RSS while sending a 1,000,000-contact campaign.
* ``crash``: ``kill -9`` in the middle of a campaign: nothing lost, duplicates bounded.
* ``probes``: ``sokures probe`` over 1,000 broken domains against checkdmarc, both on the
  same Knot in the same run, every verdict compared with the ground truth
  (``probe_truth``).

Shared pieces: ``procs`` (every process started, stopped by PID), ``sink`` (Postfix's
``smtp-sink``), ``workspace`` (a throwaway sokures installation driven through its CLI),
``dumps`` (checking what the sink received), ``stats`` and ``report`` (medians, the
summary table and ``bench-out/results.json``).
"""
