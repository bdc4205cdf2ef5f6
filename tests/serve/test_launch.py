"""The `infopt serve` process's own start-up: what it does after loading and before the port opens."""

from __future__ import annotations

import gc

from infopt.serve._launch import freeze_startup


def test_freeze_startup_takes_what_is_alive_out_of_full_sweeps() -> None:
    loaded = [[i] for i in range(1000)]  # containers the collector tracks, as a loaded model's are
    try:
        frozen = freeze_startup()
        assert frozen >= 1000 and gc.get_freeze_count() == frozen
        swept = {id(o) for o in gc.get_objects()}  # what a full sweep traverses
        assert id(loaded) not in swept and not any(id(x) in swept for x in loaded)
        made_later = [0]
        assert id(made_later) in {id(o) for o in gc.get_objects()}  # what serving makes is still swept
    finally:
        gc.unfreeze()  # this test process is not a server
