"""The soak's memory verdict: an allocator that keeps or returns a job's buffers (readings jumping
by tens of MiB, as seen on CI: 1199.7, 1200.9, 1200.9, 1200.9, 1243.9, 1247.9 MiB) is not a leak;
a steady leak of 1 MiB per job is, at the soak's own job count, warm-up and limit."""

import random

from bench.soak import JOBS, MAX_GROWTH, SWITCH_JOBS, SWITCH_WARMUP, WARMUP, Job, SoakResult

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
    assert rise > MAX_GROWTH


def _noisy_server(leak_mib_per_job: float, seed: int, jobs: int = JOBS) -> list[float]:
    """Readings of a soak of ``jobs`` jobs: the floor climbs ~6 MiB over the first 15 jobs, then each
    reading is the floor or, as the allocator keeps a job's buffers, up to 45 MiB above it (never
    more than five high readings in a row, as on CI), plus ``leak_mib_per_job`` per job."""
    rng = random.Random(seed)
    readings, high_run = [], 0
    for i in range(jobs):
        floor = 1190.0 + 0.4 * min(i, 15) + leak_mib_per_job * i
        high = high_run < 5 and rng.random() < 0.5
        high_run = high_run + 1 if high else 0
        readings.append(floor + (rng.uniform(30.0, 45.0) if high else rng.uniform(0.0, 1.5)))
    return readings


def test_allocator_noise_at_the_soak_size_passes():
    for seed in range(50):
        _, rise = _result(_noisy_server(0.0, seed)).growth()
        assert rise <= MAX_GROWTH, (seed, rise)


def test_a_leak_of_one_mib_per_job_at_the_soak_size_fails():
    for seed in range(50):
        _, rise = _result(_noisy_server(1.0, seed)).growth()
        assert rise > MAX_GROWTH, (seed, rise)


def test_the_switching_soak_passes_noise_and_fails_a_leak_of_one_mib_per_job():
    # 50 jobs judged after 10: 40 readings, a floor for each half of 20
    for seed in range(50):
        _, rise = _result(_noisy_server(0.0, seed, SWITCH_JOBS)).growth(SWITCH_WARMUP)
        assert rise <= MAX_GROWTH, (seed, rise)
        _, rise = _result(_noisy_server(1.0, seed, SWITCH_JOBS)).growth(SWITCH_WARMUP)
        assert rise > MAX_GROWTH, (seed, rise)
