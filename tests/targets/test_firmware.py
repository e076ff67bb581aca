"""The C reference firmware (targets/firmware/) against the Python simulator, on the host (gcc) and under QEMU.

``firmware`` tests build it with gcc and serve it on a pty; ``qemu`` tests
build the Cortex-M4 ELF and run it on QEMU's mps2-an386. Each skips with the
reason when its toolchain is missing (:func:`edgezo.targets.qemu.missing`).
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from edgezo.host.device_oracle import DeviceOracle
from edgezo.host.link import DeviceLink
from edgezo.models.mlp import MLP
from edgezo.models.ttm import TTMLP
from edgezo.targets import qemu
from edgezo.targets.sim import SimulatorThread

from edgezo import protocol as P
from edgezo.data import load_digits
from edgezo.losses import cross_entropy
from edgezo.oracle import SeedQueries, SeedUpdate

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "directions.json"
DIGITS_TT = [[[4, 4, 4], [8, 8, 8], 4], [[8, 8, 8], [1, 5, 2], 3]]


def _need(kind):
    reason = qemu.missing(kind)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def host_fw(tmp_path_factory):
    _need("host")
    exe = qemu.build("host", tmp_path_factory.mktemp("fw"))
    with qemu.FirmwareDevice("host", binary=exe) as dev:
        yield dev


@pytest.fixture(scope="module")
def sim():
    with SimulatorThread("cortex-m4-256k") as s:
        yield s


def _models():
    torch.manual_seed(0)
    tt = TTMLP(DIGITS_TT)
    torch.manual_seed(1)
    mlp = MLP([64, 24, 10], "relu")
    return {"tt": tt, "mlp": mlp}


def _session(port, model, batch, kind):
    """Losses and θ bits after: evaluate 6 seeds, 3 updates of 2 seeds, evaluate again."""
    oracle = DeviceOracle(model, cross_entropy, link=DeviceLink(port, timeout=5), max_batch=batch[0].shape[0])
    seeds = [11, 12, 13, 14, 15, 16]
    losses = [oracle.evaluate(SeedQueries(seeds, [0.0] + [0.01] * 5, kind=kind), batch).numpy()]
    for s in range(3):
        oracle.apply_seed_update(SeedUpdate([100 + s, 200 + s], torch.tensor([0.7, -1.3]), kind=kind), 0.05)
    losses.append(oracle.evaluate(SeedQueries(seeds[:3], [0.01, -0.01, 0.0], kind=kind), batch).numpy())
    theta = oracle.get_flat().numpy().view(np.uint32).copy()
    oracle.link.close()
    return np.concatenate(losses), theta


@pytest.mark.firmware
@pytest.mark.parametrize("name", ["tt", "mlp"])
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_host_firmware_matches_simulator(host_fw, sim, name, kind):
    d = load_digits()
    batch = (d.x_train[:32], d.y_train[:32])
    fw_losses, fw_theta = _session(host_fw.port, _models()[name], batch, kind)
    sim_losses, sim_theta = _session(sim.port, _models()[name], batch, kind)
    np.testing.assert_allclose(fw_losses, sim_losses, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(fw_theta, sim_theta)  # the seed-SGD update: bit for bit
    assert 1.0 < sim_losses[0] < 4.0


def _dense_probe(port, n, batch_x):
    """A link with a dense 1 -> n model (no bias), θ = 0 and one sample x = batch_x, label 0."""
    link = DeviceLink(port, timeout=5)
    spec = P.ModelSpec((P.LayerSpec("dense", (1,), (n,), (), False, "identity"),), 1)
    link.request(P.SET_MODEL, spec.encode())
    link.request(P.LOAD_BATCH, P.BATCH_HEAD.pack(7, 1, 1, 0) + struct.pack("<f", batch_x) + b"\x00")
    return link


@pytest.mark.firmware
def test_direction_vectors_through_the_device(host_fw):
    """Each committed rademacher/gaussian vector, through evaluate (the loss) and update (θ bit for bit)."""
    cases = [c for c in json.loads(VECTORS.read_text())["cases"]
             if c["kind"] in P.KIND_IDS and c["start"] + c["count"] <= 4096]
    assert len(cases) >= 8
    for c in cases:
        z = np.array([int(b, 16) for b in c["bits"]], np.uint32).view(np.float32)
        n, lo = c["start"] + c["count"], c["start"]
        link = _dense_probe(host_fw.port, n, 1.0)
        body = P.pack_evaluate(c["kind"], lo, c["count"], 0.5, [c["seed"]], [1])
        (loss,) = struct.unpack("<f", link.request(P.EVALUATE, body))
        logits = np.zeros(n)
        logits[lo:] = (np.float32(0.5) * z).astype(np.float64)
        ref = np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0]
        assert loss == pytest.approx(ref, rel=1e-6, abs=1e-7), c
        # update with lr 1, coefficient -1: θ[lo:] = 0 + fl32(1 · z) = z exactly
        link.request(P.UPDATE, P.pack_update(1, c["kind"], lo, c["count"], 1.0, [c["seed"]], [-1.0]))
        got = b"".join(link.request(P.READ_WEIGHTS, P.READ_REQ.pack(a, min(60, n - a))) for a in range(lo, n, 60))
        np.testing.assert_array_equal(np.frombuffer(got, "<u4"), z.view(np.uint32), err_msg=str(c))
        link.close()


@pytest.mark.firmware
def test_firmware_errors_and_retransmission(host_fw):
    with DeviceLink(host_fw.port, timeout=5) as link:
        link.send_raw(P.RESET)
        info = link.hello()
        assert not info["model_loaded"] and info["compact"] and info["name"] == "fw-host:cortex-m4-256k"
        from edgezo.host.link import DeviceError, DeviceReset

        with pytest.raises(DeviceReset, match="no_model"):
            link.request(P.READ_WEIGHTS, P.READ_REQ.pack(0, 1))
        big = P.ModelSpec((P.LayerSpec("dense", (256,), (256,), (), True, "identity"),), 64)
        with pytest.raises(DeviceError, match="out_of_memory"):
            link.request(P.SET_MODEL, big.encode())
        spec = P.ModelSpec((P.LayerSpec("dense", (2,), (3,), (), True, "identity"),), 4)
        n, ram = struct.unpack("<II", link.request(P.SET_MODEL, spec.encode()))
        assert n == 9 and ram == sum(P.device_ram_bytes(spec, 256).values())
        # a retransmitted update (the same frame, same seq) is answered from the cache, not applied twice
        body = P.pack_update(1, "rademacher", 0, 9, 0.1, [5], [1.0])
        assert struct.unpack("<IB", link.request(P.UPDATE, body)) == (1, 1)
        link.port.write(P.encode_frame(P.UPDATE, link.seq, body))
        _, rtype, seq, resp = P.decode_frame(link._read_frame(time.monotonic() + 5))
        assert (rtype, seq, struct.unpack("<IB", resp)) == (P.UPDATE | P.RESPONSE, link.seq, (1, 1))
        # a new request for an old step is acknowledged but not applied; a gap is refused
        assert struct.unpack("<IB", link.request(P.UPDATE, body)) == (1, 0)
        with pytest.raises(DeviceError, match="step_gap"):
            link.request(P.UPDATE, P.pack_update(5, "rademacher", 0, 9, 0.1, [5], [1.0]))
        link.port.write(P.encode_frame(P.HELLO, 999, b"", version=2))
        _, rtype, seq, resp = P.decode_frame(link._read_frame(time.monotonic() + 5))
        assert (rtype, seq, resp[0]) == (P.ERROR, 999, P.E_VERSION)


@pytest.mark.qemu
def test_qemu_cortex_m4(tmp_path, sim):
    """Build the Cortex-M4 ELF (fits 256 KiB SRAM), run it on QEMU mps2-an386: hello, evaluate, train steps."""
    _need("qemu")
    elf = qemu.build("qemu", tmp_path)
    size = qemu.elf_size(elf)
    assert size["sram"] <= 256 * 1024 and size["flash"] <= 1024 * 1024, size
    d = load_digits()
    batch = (d.x_train[:16], d.y_train[:16])
    results = []
    with qemu.FirmwareDevice("qemu", binary=elf) as dev:
        with DeviceLink(dev.port, timeout=10) as link:
            info = link.hello()
        assert info["name"] == "qemu-m4:cortex-m4-256k" and info["sram_bytes"] == 262144 and info["compact"]
        for port in (dev.port, sim.port):
            torch.manual_seed(0)
            oracle = DeviceOracle(TTMLP(DIGITS_TT), cross_entropy, link=DeviceLink(port, timeout=10), max_batch=16)
            before = oracle.evaluate(SeedQueries([1, 2, 3], [0.0, 0.01, 0.01]), batch).numpy()
            for s in range(3):
                coeffs = torch.tensor([float(before[1] - before[0]) * 100, -0.5])
                oracle.apply_seed_update(SeedUpdate([10 + s, 20 + s], coeffs), 0.05)
            after = oracle.evaluate(SeedQueries([1], [0.0]), batch).numpy()
            results.append((before, after, oracle.get_flat().numpy().view(np.uint32).copy()))
            oracle.link.close()
    (qb, qa, qt), (sb, sa, st) = results
    np.testing.assert_allclose(np.r_[qb, qa], np.r_[sb, sa], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(qt, st)


def _compact_script(port):
    """Raw compact messages (load-batch-u8, evaluate-chain, update-last) and their errors; (log, losses, θ bits)."""
    from edgezo.host.link import DeviceError

    from edgezo.directions import chain_seeds

    torch.manual_seed(0)
    model = TTMLP(DIGITS_TT)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().astype("<f4")
    d = load_digits()
    x, y = d.x_train[:16].numpy(), d.y_train[:16].numpy().astype(np.uint8)
    log, losses = [], []
    with DeviceLink(port, timeout=5) as link:
        spec = P.ModelSpec((P.LayerSpec("tt", (4, 4, 4), (8, 8, 8), (1, 4, 4, 1), True, "relu"),
                            P.LayerSpec("tt", (8, 8, 8), (1, 5, 2), (1, 3, 3, 1), True, "identity")), 16)
        log.append(struct.unpack("<II", link.request(P.SET_MODEL, spec.encode())))
        for lo in range(0, theta.size, 60):
            link.request(P.WRITE_WEIGHTS, struct.pack("<I", lo) + theta[lo:lo + 60].tobytes())

        def req(ftype, body):
            try:
                resp = link.request(ftype, body)
            except DeviceError as err:
                log.append(("error", P.NAMES[ftype], err.code))
                return None
            if ftype in (P.EVALUATE, P.EVALUATE_CHAIN):
                losses.append(np.frombuffer(resp, "<f4").copy())
            else:
                log.append((P.NAMES[ftype], resp))
            return resp

        n = theta.size
        chain = list(chain_seeds(2024, 5))
        req(P.UPDATE_LAST, P.pack_update_last(1, 0.05, [1.0]))  # no evaluate yet
        raw = x.tobytes() + y.tobytes()  # float32 batch
        for lo in range(0, len(raw), 200):
            req(P.LOAD_BATCH, P.BATCH_HEAD.pack(1, 16, 64, lo) + raw[lo:lo + 200])
        req(P.EVALUATE, P.pack_evaluate("rademacher", 0, n, 0.01, [chain[0]] + chain, [0] + [1] * 5))
        raw = np.round(x * 16).astype(np.uint8).tobytes() + y.tobytes()  # the same batch as u8 · 1/16
        for lo in range(0, len(raw), 200):
            req(P.LOAD_BATCH_U8, P.BATCH_U8_HEAD.pack(2, 16, 64, 1 / 16, lo) + raw[lo:lo + 200])
        req(P.EVALUATE_CHAIN, P.pack_evaluate_chain("rademacher", 0, n, 0.01, 2024, 5, P.PATTERN_FORWARD))
        req(P.UPDATE_LAST, P.pack_update_last(1, 0.05, [0.5, -1.5, 2.0, 0.25, -0.75]))
        req(P.UPDATE_LAST, P.pack_update_last(1, 0.05, [0.5, -1.5, 2.0, 0.25, -0.75]))  # again: not applied
        req(P.UPDATE_LAST, P.pack_update_last(2, 0.05, [1.0, 2.0]))  # n differs from the last evaluate's
        req(P.EVALUATE_CHAIN, P.pack_evaluate_chain("gaussian", 100, 900, 0.02, 77, 3, P.PATTERN_CENTRAL))
        req(P.UPDATE_LAST, P.pack_update_last(2, 0.1, [0.3, -0.2, 0.9]))
        req(P.UPDATE, P.pack_update(3, "rademacher", 0, n, 0.05, chain, [0.1] * 5))
        req(P.EVALUATE, P.pack_evaluate("rademacher", 5, 50, 0.01, [9, 9, 8], [1, -1, 0]))
        req(P.UPDATE_LAST, P.pack_update_last(4, 0.05, [3.0]))  # the explicit evaluate's distinct seed: 9
        req(P.EVALUATE_CHAIN, P.pack_evaluate_chain("rademacher", 0, n, 0.01, 1, 3, 2))  # bad pattern
        req(P.EVALUATE_CHAIN, P.pack_evaluate_chain("rademacher", 0, n, 0.01, 1, 0, 0))  # n = 0
        req(P.EVALUATE_CHAIN, P.pack_evaluate_chain("rademacher", 0, n, 0.01, 1, 62, 0))  # 63 losses > 62
        req(P.UPDATE_LAST, P.pack_update_last(9, 0.05, [3.0]))  # a step gap
        got = b"".join(link.request(P.READ_WEIGHTS, P.READ_REQ.pack(a, min(60, n - a))) for a in range(0, n, 60))
    return log, losses, np.frombuffer(got, "<u4").copy()


@pytest.mark.firmware
def test_compact_messages_firmware_matches_simulator(host_fw, sim):
    fw_log, fw_losses, fw_theta = _compact_script(host_fw.port)
    sim_log, sim_losses, sim_theta = _compact_script(sim.port)
    assert fw_log == sim_log  # the same answers and errors
    codes = [e[2] for e in sim_log if e[0] == "error"]
    assert codes == [P.E_ARG, P.E_ARG, P.E_ARG, P.E_ARG, P.E_ARG, P.E_STEP]
    applied = [struct.unpack("<IB", e[1]) for e in sim_log if e[0] in ("update", "update_last")]
    assert applied == [(1, 1), (1, 0), (2, 1), (3, 1), (4, 1)]
    np.testing.assert_array_equal(fw_theta, sim_theta)  # the seed-SGD updates: bit for bit
    for a, b in zip(fw_losses, sim_losses):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    for losses in (fw_losses, sim_losses):
        np.testing.assert_array_equal(losses[0], losses[1])  # u8 · 1/16 batch == float32 batch, chain == explicit
        assert len(losses[2]) == 6 and len(losses[3]) == 3


def test_update_last_equals_explicit_update(sim):
    """update-last applies the last evaluate's seeds, kind and range: θ equals the explicit updates'."""
    from edgezo.targets.sim import DeviceState

    from edgezo.directions import chain_seeds

    log, losses, theta = _compact_script(sim.port)
    assert [e[2] for e in log if e[0] == "error"] == [P.E_ARG] * 5 + [P.E_STEP]
    np.testing.assert_array_equal(losses[0], losses[1])  # u8 batch + evaluate-chain == float32 batch + evaluate
    torch.manual_seed(0)
    model = TTMLP(DIGITS_TT)
    ref = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().astype("<f4")
    state = DeviceState("cortex-m4-256k")
    spec = P.ModelSpec((P.LayerSpec("dense", (1,), (ref.size,), (), False, "identity"),), 1)
    state.handle(P.SET_MODEL, spec.encode())
    state.theta[:] = ref
    n, chain = ref.size, list(chain_seeds(2024, 5))
    for body in (P.pack_update(1, "rademacher", 0, n, 0.05, chain, [0.5, -1.5, 2.0, 0.25, -0.75]),
                 P.pack_update(2, "gaussian", 100, 900, 0.1, list(chain_seeds(77, 3)), [0.3, -0.2, 0.9]),
                 P.pack_update(3, "rademacher", 0, n, 0.05, chain, [0.1] * 5),
                 P.pack_update(4, "rademacher", 5, 50, 0.05, [9], [3.0])):
        rtype, _ = state.handle(P.UPDATE, body)
        assert rtype == P.UPDATE | P.RESPONSE
    np.testing.assert_array_equal(theta, state.theta.view(np.uint32))


@pytest.mark.qemu
def test_qemu_compact_messages(tmp_path, sim):
    """The compact messages on the Cortex-M4 build: the same answers as the simulator, θ bit for bit."""
    _need("qemu")
    elf = qemu.build("qemu", tmp_path)
    with qemu.FirmwareDevice("qemu", binary=elf) as dev:
        q_log, q_losses, q_theta = _compact_script(dev.port)
    s_log, s_losses, s_theta = _compact_script(sim.port)
    assert q_log == s_log
    np.testing.assert_array_equal(q_theta, s_theta)
    for a, b in zip(q_losses, s_losses):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(q_losses[0], q_losses[1])


@pytest.mark.firmware
@pytest.mark.parametrize("where", ["firmware", "simulator"])
def test_models_whose_sizes_overflow_32_bits_are_refused_as_out_of_memory(host_fw, sim, where):
    """Sizes near 2^16 / 2^32 (and TT layers whose counts wrap in 32-bit arithmetic) get the protocol's
    out_of_memory error from both devices, never a model that seems to fit."""
    import math

    from edgezo.host.link import DeviceError
    from edgezo.targets.fuzz import WRAPPING_TT

    bodies = [P.ModelSpec((P.LayerSpec("dense", (65535,), (65535,), (), True, "identity"),), 1).encode(),
              P.ModelSpec((P.LayerSpec("dense", (64,), (10,), (), True, "identity"),), 65535).encode()]
    for ins, outs, ranks in WRAPPING_TT:
        assert math.prod(ins) * max(ranks) * math.prod(outs) > 2**32
        bodies.append(P.ModelSpec((P.LayerSpec("tt", tuple(ins), tuple(outs), tuple(ranks), False, "identity"),),
                                  1).encode())
    port = host_fw.port if where == "firmware" else sim.port
    with DeviceLink(port, timeout=5) as link:
        for body in bodies:
            with pytest.raises(DeviceError, match="out_of_memory"):
                link.request(P.SET_MODEL, body)


@pytest.mark.firmware
def test_device_sim_exits_non_zero_when_its_firmware_dies(tmp_path):
    """`edgezo device sim --firmware host` reports the death of the firmware process with a non-zero status."""
    import os
    import signal
    import subprocess
    import sys

    _need("host")
    proc = subprocess.Popen([sys.executable, "-m", "edgezo", "device", "sim", "--firmware", "host"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("PORT ")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if not children.exists():
            pytest.skip("needs /proc/PID/task/PID/children (Linux) to find the firmware process")
        firmware = [int(pid) for pid in children.read_text().split()]
        assert len(firmware) == 1
        os.kill(firmware[0], signal.SIGKILL)
        assert proc.wait(timeout=30) != 0
        assert "firmware process stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
