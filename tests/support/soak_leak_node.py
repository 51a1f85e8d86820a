"""A ComfyUI custom node (a single-file pack) that leaks on purpose: each run keeps ``mib`` MiB of
written bytes for the life of the server, so bench/soak.py --leak-mib shows its memory verdict
failing on a real server (no tests here)."""

_KEPT = []


class WanSoakLeak:
    CATEGORY = "testing"
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "leak"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mib": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1024.0})}}

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")

    def leak(self, mib):
        _KEPT.append(bytearray(b"\x01") * int(mib * 2**20))  # written, so resident
        return {}


NODE_CLASS_MAPPINGS = {"WanSoakLeak": WanSoakLeak}
