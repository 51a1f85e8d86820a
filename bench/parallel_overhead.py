"""Overhead of the parallel path at degree 1 (one gloo process, Ulysses kernel and token split with
their collectives present) against the plain forward of a small DiT on the CPU: median of 20 runs."""
import sys, time, statistics, torch, torch.distributed as dist
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]
from dit_fixtures import our_model, random_weights, tiny_config, make_inputs
from wan.parallel.groups import ParallelGroups
from wan.parallel.model import use_parallel
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29611", rank=0, world_size=1)
cfg = tiny_config("t2v_1_3b").tiny(dim=512, ffn_dim=1024, num_layers=4)
m = our_model(cfg, random_weights(cfg)); 
inp = make_inputs(cfg, frames=5, height=16, width=24)  # 5*8*12 = 480 tokens
def run(): 
    with torch.no_grad(): m(inp.x, inp.t, inp.context)
plain, par = [], []
for i in range(25):
    t=time.perf_counter(); run(); plain.append(time.perf_counter()-t)
    with use_parallel(m, ParallelGroups.single()):
        t=time.perf_counter(); run(); par.append(time.perf_counter()-t)
p, q = statistics.median(plain[5:]), statistics.median(par[5:])
print(f"plain {p*1e3:.2f} ms  parallel path at degree 1 {q*1e3:.2f} ms  overhead {100*(q/p-1):+.1f}%")
