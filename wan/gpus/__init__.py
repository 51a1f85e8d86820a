"""One job over several GPUs from ComfyUI: a group of warm Ray actors, one per GPU, joined in one
torch.distributed process group (group.py), running the job through ``wan.parallel.rank.run_rank`` on
each rank; what the group is (GPUs, layout) and its checks (layout.py); how an actor process finds
this package under the name its caller gave it (package_alias.py)."""
