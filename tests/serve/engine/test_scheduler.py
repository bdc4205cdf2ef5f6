"""The scheduler alone (no model): budgets, chunks, admission, preemption order, stop rules."""

from __future__ import annotations

from infopt.serve.engine import EngineConfig, KVCacheManager, Request, SamplingParams, Scheduler, SchedulerOutput


def _scheduler(blocks: int = 64, **config: object) -> Scheduler:
    cfg = EngineConfig(**{"block_size": 4, "max_num_seqs": 4, "max_tokens_per_step": 16, "prefill_chunk": 8,
                          **config})  # type: ignore[arg-type]
    return Scheduler(cfg, KVCacheManager(blocks, 4), max_model_len=256, eos_token_ids=[0])


def _add(s: Scheduler, request_id: str, n: int, **params: object) -> Request:
    request = Request(request_id, list(range(1, n + 1)), SamplingParams(**{"max_tokens": 50, **params}))
    s.add(request)  # type: ignore[arg-type]
    return request


def _step(s: Scheduler, token: int = 7) -> SchedulerOutput:
    out = s.schedule()
    s.update_from_output(out, {q.request_id: [token] for q in out.seqs if q.num_logits})
    return out


def test_chunks_and_the_token_budget() -> None:
    s = _scheduler()
    _add(s, "a", 20)
    _add(s, "b", 3)
    out = _step(s)
    assert [(q.request_id, len(q.token_ids), q.start, q.num_logits) for q in out.seqs] == [("a", 8, 0, 0),
                                                                                          ("b", 3, 0, 1)]
    out = _step(s)
    assert [(q.request_id, len(q.token_ids), q.start) for q in out.seqs] == [("a", 8, 8), ("b", 1, 3)]
    out = _step(s)
    assert [(q.request_id, len(q.token_ids), q.start, q.num_logits) for q in out.seqs] == [("a", 4, 16, 1),
                                                                                          ("b", 1, 4, 1)]
    assert out.num_tokens == 5 and out.seqs[0].block_table == s.kv.block_table("a")


def test_admission_waits_for_seats_and_budget() -> None:
    s = _scheduler(max_num_seqs=2, max_tokens_per_step=10, prefill_chunk=8)
    for name in "abc":
        _add(s, name, 6)
    out = s.schedule()
    assert [(q.request_id, len(q.token_ids)) for q in out.seqs] == [("a", 6), ("b", 4)]  # budget ran out in b
    assert [r.request_id for r in s.waiting] == ["c"]


def test_preemption_takes_the_newest_and_requeues_it_first() -> None:
    s = _scheduler(blocks=6, max_tokens_per_step=32, prefill_chunk=32)
    a, b, c = _add(s, "a", 7), _add(s, "b", 7), _add(s, "c", 4)
    _step(s)  # a: 2 blocks, b: 2, c: 1, and 1 free
    _step(s)  # c's 5th token takes the free block
    out = _step(s)  # a's and b's 9th tokens need a block each: c (the newest) gives its two back
    assert out.preempted == ["c"] and s.num_preemptions == 1 and [q.request_id for q in out.seqs] == ["a", "b"]
    assert list(s.waiting) == [c] and c.num_computed == 0 and c.output_token_ids == [7, 7]
    assert a.num_computed == b.num_computed == 9 and s.kv.num_free_blocks == 0
    _add(s, "d", 2)
    assert s.waiting[0] is c  # the preempted request stays first in line


def test_stop_rules() -> None:
    s = _scheduler()
    _add(s, "eos", 3)
    _add(s, "len", 3, max_tokens=2)
    _add(s, "own", 3, stop_token_ids=(9,))
    out = s.schedule()
    results = s.update_from_output(out, {"eos": [0], "len": [5], "own": [9]})
    done = {r.request_id: (r.finished, r.finish_reason, r.stop_reason) for r in results}
    assert done == {"eos": (True, "stop", 0), "len": (False, None, None), "own": (True, "stop", 9)}
    results = s.update_from_output(s.schedule(), {"len": [5]})
    assert results[0].finish_reason == "length" and not s.has_unfinished()
    assert s.kv.num_free_blocks == s.kv.num_blocks
