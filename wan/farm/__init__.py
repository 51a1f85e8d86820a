"""Many jobs on many GPUs: ``python -m wan farm``. One headless ComfyUI per GPU (or per CPU worker),
each owned by a Ray actor (worker.py), behind one ComfyUI-compatible endpoint (http.py) whose queue
hands each prompt to an idle worker (dispatch.py); cluster.py starts or joins Ray; launch.py puts
them together. Ray and aiohttp are imported only by these modules."""
