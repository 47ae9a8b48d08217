"""WeightStore on its own, in port mode: a load round trip into the inactive bank, the
hand-off (pending -> take -> swap) that makes it the active one only when a frame takes it,
the ready rules around it, and malformed loads (last early, missing, late) that are
discarded with an error and never leave the port waiting."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from dwconv.golden.formats import LayerFormats
from dwconv.golden.spec import LayerSpec
from dwconv.hw.weights import WeightStore
from dwconv.sim.beats import weight_load_values

SPEC = LayerSpec(input_shape=(3, 3, 4), kernel_size=(2, 2), depth_multiplier=2, name="dw")
FORMATS = LayerFormats.from_strings(weight="fixed<6,2>", bias="fixed<9,4>")
LANES = 2
GROUPS = SPEC.channels // LANES
#: cycles within which a load's end shows (pending, or ready again after a discarded one)
SETTLE = 4


def random_weights(seed):
    rng = np.random.default_rng(seed)
    w, b = FORMATS.weight, FORMATS.bias
    return (rng.integers(w.raw_min, w.raw_max + 1, SPEC.kernel_shape),
            rng.integers(b.raw_min, b.raw_max + 1, SPEC.out_channels))


def expected_words(kernel, bias):
    """{group: (kernel[t][q], bias[q])} as the store must read them out."""
    kh, kw = SPEC.kernel_size
    m = SPEC.depth_multiplier
    words = {}
    for g in range(GROUPS):
        lanes = [(g * LANES + p, k) for p in range(LANES) for k in range(m)]
        words[g] = ([[int(kernel[t // kw, t % kw, c, k]) for c, k in lanes]
                     for t in range(kh * kw)],
                    [int(bias[c * m + k]) for c, k in lanes])
    return words


class Driver:
    """Drives one WeightStore cycle by cycle and records what it sees."""

    def __init__(self, ctx, store, rng):
        self.ctx, self.store, self.rng = ctx, store, rng
        self.errors = 0
        ctx.set(store.swap, 0)
        ctx.set(store.take, 0)

    async def tick(self):
        _, _, error = await self.ctx.tick().sample(self.store.error)
        self.errors += error

    async def send(self, beats, pause=0.3):
        """Offer ``beats`` ((value, last) pairs) with random pauses; each is held until
        taken.  Returns the cycles the port kept a beat waiting."""
        load, waited = self.store.load, 0
        for value, last in beats:
            while self.rng.random() < pause:
                self.ctx.set(load.valid, 0)
                await self.tick()
            self.ctx.set(load.payload, {"value": value, "last": last})
            self.ctx.set(load.valid, 1)
            while True:
                ready = self.ctx.get(load.ready)
                await self.tick()
                if ready:
                    break
                waited += 1
        self.ctx.set(load.valid, 0)
        return waited

    async def cycles_until(self, signal, limit):
        """Cycles until ``signal`` is high (None if not within ``limit``)."""
        for n in range(limit + 1):
            if self.ctx.get(signal):
                return n
            await self.tick()
        return None

    async def pulse(self, signal):
        self.ctx.set(signal, 1)
        await self.tick()
        self.ctx.set(signal, 0)

    async def read(self, bank):
        """Every group's kernel and bias words in ``bank``."""
        words = {}
        store = self.store
        for g in range(GROUPS):
            for address in (store.read_group, store.bias_group):
                self.ctx.set(address, g)
            self.ctx.set(store.read_bank, bank)
            self.ctx.set(store.bias_bank, bank)
            await self.tick()
            kernel, bias = self.ctx.get(store.kernel), self.ctx.get(store.bias)
            words[g] = ([[int(kernel[t][q]) for q in range(store.outputs)]
                         for t in range(store.taps)],
                        [int(bias[q]) for q in range(store.outputs)])
        return words


def run(test, seed=0):
    kernel, bias = random_weights(seed)
    store = WeightStore(SPEC, FORMATS, LANES, kernel, bias, mode="port")

    async def bench(ctx):
        await test(Driver(ctx, store, np.random.default_rng(seed)), store)

    sim = Simulator(store)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return kernel, bias


def beats(store, kernel, bias):
    """The load port's beats of ``kernel`` and ``bias``, ``last`` on the final value."""
    values = weight_load_values(SPEC, kernel, bias, store.load_width)
    return [(value, n == len(values) - 1) for n, value in enumerate(values)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_load_goes_to_the_inactive_bank_and_waits_for_a_frame(seed):
    new_kernel, new_bias = random_weights(100 + seed)
    seen = {}

    async def test(driver, store):
        seen["initial"] = await driver.read(0)
        await driver.send(beats(store, new_kernel, new_bias))
        seen["pending after"] = await driver.cycles_until(store.pending, SETTLE)
        # no frame takes it yet: the active bank stays, and the port takes no new load
        seen["waited"] = 0
        for _ in range(10):
            seen["waited"] += not driver.ctx.get(store.load.ready)
            await driver.tick()
        seen["bank before"] = driver.ctx.get(store.bank)
        seen["active before"] = await driver.read(0)
        await driver.pulse(store.take)
        seen["pending after take"] = driver.ctx.get(store.pending)
        await driver.pulse(store.swap)
        seen["bank after"] = driver.ctx.get(store.bank)
        seen["ready after swap"] = await driver.cycles_until(store.load.ready, SETTLE)
        seen["active after"] = await driver.read(1)
        seen["inactive after"] = await driver.read(0)
        seen["errors"] = driver.errors

    kernel, bias = run(test, seed)
    initial = expected_words(kernel, bias)
    loaded = expected_words(new_kernel, new_bias)
    assert seen["initial"] == seen["active before"] == seen["inactive after"] == initial
    assert seen["active after"] == loaded
    assert seen["pending after"] is not None and seen["pending after"] <= 2
    assert seen["waited"] == 10
    assert (seen["bank before"], seen["pending after take"], seen["bank after"]) == (0, 0, 1)
    assert seen["ready after swap"] is not None
    assert seen["errors"] == 0


def _malformed(load):
    """Beat lists of malformed loads of ``load`` (a good load's beats), and the errors each
    must raise."""
    values = [value for value, _ in load]
    return {
        "last early": ([(v, n == 5) for n, v in enumerate(values[:6])], 1),
        "last missing": ([(v, False) for v in values], 1),
        # the values run past the end (an error there), the rest ends in a short load
        "last late": ([(v, False) for v in values] + [(1, False), (2, False), (3, True)], 2),
    }


@pytest.mark.parametrize("kind", ["last early", "last missing", "last late"])
def test_a_malformed_load_is_discarded_and_the_port_keeps_going(kind):
    new_kernel, new_bias = random_weights(7)
    bad_kernel, bad_bias = random_weights(8)
    seen = {}

    async def test(driver, store):
        bad, errors = _malformed(beats(store, bad_kernel, bad_bias))[kind]
        seen["expected errors"] = errors
        await driver.send(bad)
        seen["pending"] = await driver.cycles_until(store.pending, 3 * SETTLE)
        seen["ready"] = await driver.cycles_until(store.load.ready, SETTLE)
        seen["errors"] = driver.errors
        # then a good load goes through as usual
        await driver.send(beats(store, new_kernel, new_bias))
        seen["good pending"] = await driver.cycles_until(store.pending, SETTLE)
        await driver.pulse(store.take)
        await driver.pulse(store.swap)
        seen["active"] = await driver.read(1)
        seen["errors after"] = driver.errors

    run(test)
    assert seen["pending"] is None
    assert seen["ready"] is not None
    assert seen["errors"] == seen["errors after"] == seen["expected errors"]
    assert seen["good pending"] is not None
    assert seen["active"] == expected_words(new_kernel, new_bias)


def test_the_loaded_bank_stays_until_the_next_load_is_taken():
    """Two loads in a row: the second, sent right after the first's swap, waits at most two
    cycles, lands in the bank the first left while the first stays active, and becomes
    active only at its own take and swap."""
    first, second = random_weights(11), random_weights(12)
    seen = {}

    async def test(driver, store):
        await driver.send(beats(store, *first))
        await driver.cycles_until(store.pending, SETTLE)
        await driver.pulse(store.take)
        await driver.pulse(store.swap)
        seen["waited"] = await driver.send(beats(store, *second), pause=0.0)
        await driver.cycles_until(store.pending, SETTLE)
        seen["still first"] = await driver.read(driver.ctx.get(store.bank))
        await driver.pulse(store.take)
        await driver.pulse(store.swap)
        seen["bank"] = driver.ctx.get(store.bank)
        seen["after second"] = await driver.read(seen["bank"])

    run(test)
    assert seen["still first"] == expected_words(*first)
    assert seen["after second"] == expected_words(*second)
    assert seen["bank"] == 0
    # sent right after the first swap: the port waits until two cycles after it
    assert 0 < seen["waited"] <= 2
