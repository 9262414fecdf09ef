"""A tenant's CDRs as the portal serves them: the CSV export (:mod:`.table`, pure), its
time window (:mod:`.window`, pure), reading a store window by window (:mod:`.export`)
and the command ``python -m portal.cdrs export`` (:mod:`.cli`)."""
