"""The soak's memory verdict: an allocator that keeps or returns a job's buffers (readings jumping
by tens of MiB, as seen on CI: 1199.7, 1200.9, 1200.9, 1200.9, 1243.9, 1247.9 MiB) is not a leak;
a steady leak of a few MiB per job is."""

from bench.soak import Job, SoakResult, WARMUP

MIB = 2**20


def _result(readings_mib):
    jobs = [Job(index=i, kind="t2v", prompt_id=str(i), rss=int(r * MIB)) for i, r in enumerate(readings_mib)]
    return SoakResult(jobs, dit_loads=2)


def test_buffers_kept_then_returned_are_not_growth():
    warm = [1100.0] * WARMUP
    # CI's readings, continued as the same two levels for 32 jobs.
    tail = [1199.7, 1200.9, 1200.9, 1200.9, 1243.9, 1247.9] * 3 + [1199.9, 1244.0, 1200.1, 1243.8]
    _, rise = _result(warm + tail).growth()
    assert abs(rise) < 0.005


def test_a_leak_of_four_mib_per_job_is_growth_past_the_soak_limit():
    warm = [1100.0] * WARMUP
    tail = [1200.0 + 4.0 * i + (44.0 if i % 5 == 4 else 0.0) for i in range(22)]
    _, rise = _result(warm + tail).growth()
    # floor of jobs 21..31 (1244) minus floor of jobs 10..20 (1200), over a mean near 1250
    assert abs(rise - 44.0 / 1250.0) < 0.002
    assert rise > 0.02  # tests/server/test_soak.py's MAX_GROWTH
