"""ComfyUI hands a socket any JSON value that is not a link (a number, a string, null, an object)
unchecked to the node function; every node of the pack refuses that with WanInputError naming the
input, before its own code runs. Real node outputs pass."""

from __future__ import annotations

import pytest
import torch
from refs import import_pack, pack_module

BARE = [None, -1, 3.5, "x", [1], {"__class__": "os.system"}, True]


@pytest.fixture(scope="module")
def nodes():
    return import_pack("wan_pack_socket_test").NODE_CLASS_MAPPINGS


def _socket_inputs(cls):
    validate = pack_module("nodes._validate", "wan_pack_socket_test")
    return validate._sockets(cls)


def test_every_socket_of_every_node_refuses_bare_values(nodes):
    WanInputError = pack_module("wan.errors", "wan_pack_socket_test").WanInputError
    checked = 0
    for name, cls in nodes.items():
        for socket, (kind, required) in _socket_inputs(cls).items():
            for value in BARE if required else BARE[1:]:  # None: an optional socket left unconnected
                with pytest.raises(WanInputError) as info:
                    getattr(cls(), cls.FUNCTION)(**{socket: value})
                assert socket in str(info.value) and kind in str(info.value), (name, socket, info.value)
                checked += 1
    assert checked > 100


def test_real_outputs_pass(nodes):
    validate = pack_module("nodes._validate", "wan_pack_socket_test")
    guidance = pack_module("nodes.guidance", "wan_pack_socket_test")
    assert validate.socket_problem("samples", "LATENT", {"samples": torch.zeros(1, 16, 1, 4, 4)}) is None
    assert validate.socket_problem("images", "IMAGE", torch.zeros(1, 8, 8, 3)) is None
    assert validate.socket_problem("expert_options", "WANEXPERTS", guidance.SamplerFields(switch_step=2)) is None
    assert validate.socket_problem("lora", "WANLORA", ()) is None
    assert validate.socket_problem("model", "WANMODEL", object()) is None
