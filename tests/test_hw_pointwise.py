"""The pointwise stage alone: exact against the raw-integer reference, with random stalls,
back-to-back frames, folding, every output parallelism, and malformed streams."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwconv.golden.fixed import QFormat
from dwconv.golden.spec import LayerError
from dwconv.hw.pointwise import PointwisePlan, PointwiseStage

from support.pointwise_reference import pointwise_reference
from support.stream_bench import (beats_to_frames, expected_flags, frame_beats, pack, run_stream,
                          stream_ports)

#: Format sets: truncation and wrap; rounding and saturation; an unsigned mid value and
#: output; a given accumulator; a bias finer than the products (the accumulator's binary
#: point is the bias').
FORMAT_SETS = {
    "trn_wrap": dict(mid="fixed<8,3>", pointwise="fixed<8,2>", bias="fixed<8,3>",
                     output="fixed<8,4>"),
    "rnd_sat": dict(mid="fixed<8,3>", pointwise="fixed<6,1>", bias="fixed<10,4>",
                    output="fixed<10,5,RND,SAT>"),
    "unsigned": dict(mid="ufixed<6,2>", pointwise="fixed<7,2,RND_CONV,SAT>",
                     bias="fixed<8,4,RND,SAT>", output="ufixed<8,4,RND_CONV,SAT>"),
    "accum": dict(mid="fixed<8,3>", pointwise="fixed<8,2>", bias="fixed<8,3>",
                  accum="fixed<14,7,RND_ZERO,SAT_SYM>", output="fixed<9,5,RND_INF,SAT_ZERO>"),
    "fine_bias": dict(mid="fixed<6,4>", pointwise="fixed<6,4>", bias="fixed<12,2,RND>",
                      output="fixed<8,6,RND_CONV,SAT>"),
}


def formats_of(name):
    texts = dict(FORMAT_SETS[name])
    accum = texts.pop("accum", None)
    parsed = {role: QFormat.parse(text) for role, text in texts.items()}
    parsed["accum"] = None if accum is None else QFormat.parse(accum, max_width=62)
    return parsed


@dataclass
class StageCase:
    plan: PointwisePlan
    formats: dict
    kernel: np.ndarray
    bias: np.ndarray
    activation: str

    def frames(self, count, height, width, rng):
        fmt = self.formats["mid"]
        return rng.integers(fmt.raw_min, fmt.raw_max + 1,
                            size=(count, height, width, self.plan.channels))

    def expected(self, frames):
        return pointwise_reference(frames, self.kernel, self.bias,
                                   activation=self.activation, **self.formats)


def make_stage(*, channels, filters, in_lanes, out_lanes=None, reuse=1, formats="rnd_sat",
               activation="linear", seed=0, kernel=None):
    rng = np.random.default_rng(seed)
    fmts = formats_of(formats)
    pw, b = fmts["pointwise"], fmts["bias"]
    if kernel is None:
        kernel = rng.integers(pw.raw_min, pw.raw_max + 1, size=(channels, filters))
    bias = rng.integers(b.raw_min, b.raw_max + 1, size=filters)
    plan = PointwisePlan(channels=channels, filters=filters, in_lanes=in_lanes,
                         out_lanes=out_lanes or filters, reuse=reuse, activation=activation,
                         kernel_raw=kernel, bias_raw=bias, **fmts)
    return StageCase(plan, fmts, kernel, bias, activation)


def run_case(case, frames, *, stall=0.0, seed=0, sink_stall=None):
    stage = PointwiseStage(case.plan)
    beats = frame_beats(frames, stage.in_lanes, case.formats["mid"].width)
    n, h, w, _ = frames.shape
    out_count = n * h * w * stage.out_beats
    run = run_stream(stage, stream_ports(stage), beats, out_count, stall=stall, seed=seed,
                     sink_stall=sink_stall)
    assert len(run.taken) == out_count, f"{len(run.taken)} of {out_count} output beats"
    outputs = beats_to_frames(run.data(), (n, h, w, stage.filters), stage.out_lanes,
                              case.formats["output"])
    return run, outputs


def check(case, frames, *, stall, seed=0, sink_stall=None):
    run, outputs = run_case(case, frames, stall=stall, seed=seed, sink_stall=sink_stall)
    n, h, w, _ = frames.shape
    np.testing.assert_array_equal(outputs, case.expected(frames))
    assert run.flags() == expected_flags(n, h, w, case.plan.out_beats)
    assert run.held
    assert not run.error
    return run


SWEEP = [
    # channels C*M, filters F, input lanes L, output lanes Q, reuse R, formats, activation
    (1, 1, 1, 1, 1, "trn_wrap", "linear"),
    (4, 3, 4, 3, 1, "rnd_sat", "relu"),          # one beat per pixel, constant products
    (6, 4, 2, 2, 1, "unsigned", "relu6"),        # three groups, two output beats
    (8, 6, 4, 1, 2, "accum", "linear"),          # folded, six output beats per pixel
    (6, 5, 3, 5, 3, "fine_bias", "relu"),        # R = L: one multiplier per filter
    (8, 4, 8, 2, 3, "rnd_sat", "relu6"),         # R not dividing L: a slot idles a phase
    (12, 2, 4, 2, 1, "accum", "relu"),
    (3, 16, 3, 16, 1, "trn_wrap", "linear"),
]


@pytest.mark.parametrize("channels,filters,lanes,out_lanes,reuse,formats,activation", SWEEP)
def test_sweep_with_stalls(channels, filters, lanes, out_lanes, reuse, formats, activation):
    case = make_stage(channels=channels, filters=filters, in_lanes=lanes, out_lanes=out_lanes,
                      reuse=reuse, formats=formats, activation=activation, seed=channels)
    rng = np.random.default_rng(filters)
    check(case, case.frames(3, 2, 3, rng), stall=0.3, seed=reuse)


@pytest.mark.parametrize("channels,filters,lanes,out_lanes,reuse", [
    (4, 4, 4, 4, 1),     # one beat per pixel in, one out
    (8, 4, 2, 1, 1),     # four beats in, four out
    (8, 8, 2, 2, 1),     # input rate: four beats in, four out
    (4, 6, 4, 1, 1),     # output rate: one beat in, six out
    (6, 4, 3, 4, 2),     # two beats of two phases each
    (4, 2, 4, 1, 4),
])
def test_cycle_count_and_latency(channels, filters, lanes, out_lanes, reuse):
    """Sink always ready, source never pausing: the frames take ``cycles_per_pixel`` per
    pixel, and the last output beat comes ``latency`` cycles after the last input beat
    (plus the pixel's other output beats)."""
    case = make_stage(channels=channels, filters=filters, in_lanes=lanes, out_lanes=out_lanes,
                      reuse=reuse)
    stage = case.plan
    frames = case.frames(2, 3, 4, np.random.default_rng(0))
    run = check(case, frames, stall=0.0)
    pixels = 2 * 3 * 4
    assert stage.cycles_per_pixel == max(stage.groups * reuse, stage.out_beats)
    if stage.groups * reuse >= stage.out_beats:
        # input bound: a beat every R cycles (the input skid buffer takes up to two beats
        # early), pixels R*G cycles apart at the output
        early = (pixels * stage.groups - 1) * reuse - (run.last_in - run.first_in)
        assert 0 <= early <= 2 * reuse
        assert run.last_out - run.first_out == ((pixels - 1) * stage.groups * reuse
                                                + stage.out_beats - 1)
    else:
        # output bound: once the first output is out, one output beat per cycle
        assert run.last_out - run.first_out == pixels * stage.out_beats - 1
    assert run.first_out - run.first_in == (stage.groups * reuse - reuse) + stage.latency
    assert run.cycles <= stage.cycles_per_frame(pixels) + stage.latency + stage.out_beats


def test_figures_without_hardware():
    case = make_stage(channels=8, filters=16, in_lanes=8)
    stage = case.plan
    assert (stage.multipliers, stage.real_multipliers, stage.cycles_per_pixel) == (128, 0, 1)
    folded = make_stage(channels=8, filters=16, in_lanes=4, out_lanes=8, reuse=3).plan
    # ceil(4/3) = 2 multipliers per filter; 2 beats of 3 phases per pixel
    assert (folded.multipliers, folded.real_multipliers, folded.cycles_per_pixel) == (32, 32, 6)


def test_long_backpressure_loses_nothing():
    """A source that never pauses, a sink that holds ready low 85% of the cycles: the
    queue fills, the credits hold the input back, nothing is lost or reordered."""
    for params in (dict(channels=4, filters=4, in_lanes=2, out_lanes=2),
                   dict(channels=4, filters=4, in_lanes=4)):
        case = make_stage(**params, formats="accum", activation="relu")
        frames = case.frames(3, 5, 6, np.random.default_rng(5))
        # more pixels than the queue holds: the credits must hold the input back
        assert 3 * 5 * 6 > 2 * case.plan.queue_depth
        check(case, frames, stall=0.0, sink_stall=0.85, seed=3)


def _framed_pixels(beats, lanes, groups):
    """The stage's framing rule in Python: a start of frame restarts the group count, a
    pixel is complete at its G-th beat.  Returns the pixels' values and (first, last)."""
    pixels, flags, values, group, first = [], [], [], 0, 0
    for data, is_first, is_last in beats:
        if is_first:
            values, group, first = [], 0, 1
        values += [(data >> (n * 8)) & 0xff for n in range(lanes)]
        if group == 0:
            first = is_first
        if group == groups - 1:
            pixels.append([v - 256 if v >= 128 else v for v in values])
            flags.append((first, is_last))
            values, group = [], 0
        else:
            group += 1
    return np.asarray(pixels, dtype=np.int64), flags


@pytest.mark.parametrize("damage", ["first_mid_pixel", "last_mid_pixel", "first_late"])
def test_malformed_stream_sets_error_and_resynchronizes(damage):
    case = make_stage(channels=6, filters=2, in_lanes=2, out_lanes=1, formats="trn_wrap")
    stage = PointwiseStage(case.plan)
    frames = case.frames(3, 2, 3, np.random.default_rng(7))
    beats = frame_beats(frames, 2, 8)
    per_frame = 2 * 3 * 3
    k = per_frame + 7                       # group 1 of a pixel of the second frame
    data, first, last = beats[k]
    if damage == "first_mid_pixel":
        beats[k] = (data, 1, last)
    elif damage == "last_mid_pixel":
        beats[k] = (data, first, 1)
    else:                                   # a stray beat before a start of frame
        beats.insert(per_frame, (pack([1, 2], 8), 0, 0))
    pixels, flags = _framed_pixels(beats, 2, 3)
    out_count = len(pixels) * stage.out_beats
    run = run_stream(stage, stream_ports(stage), beats, out_count, stall=0.2, seed=1,
                     extra_cycles=40)
    assert len(run.taken) == out_count
    outputs = beats_to_frames(run.data(), (len(pixels), stage.filters), 1,
                              case.formats["output"])
    np.testing.assert_array_equal(outputs, case.expected(pixels))
    # output beats carry the pixels' flags: first on the first beat, last on the last
    beat_flags = [(first and j == 0, last and j == stage.out_beats - 1)
                  for first, last in flags for j in range(stage.out_beats)]
    assert run.flags() == [(int(a), int(b)) for a, b in beat_flags]
    # the third frame is whole and correct after the damage; the stray beat in the
    # third case is taken as a pixel's first group, and the start of frame resets it
    np.testing.assert_array_equal(outputs[-6:], case.expected(frames[2].reshape(6, 6)))
    assert run.error        # the stray beat: a start of frame at its pixel's second beat


@pytest.mark.parametrize("kwargs,message", [
    (dict(in_lanes=4), "input lanes must divide the 6 values"),
    (dict(out_lanes=3), "output lanes must divide the 4 filters"),
    (dict(reuse=3), "pointwise reuse must be from 1 to 2"),
    (dict(reuse=0), "pointwise reuse must be a whole number"),
    (dict(activation="tanh"), "activation must be linear, relu or relu6"),
])
def test_bad_parameters_are_layer_errors(kwargs, message):
    params = dict(channels=6, filters=4, in_lanes=2)
    params.update(kwargs)
    with pytest.raises(LayerError, match=message):
        make_stage(**params)


def test_bias_without_use_bias_is_refused():
    with pytest.raises(LayerError, match="without bias needs a zero bias"):
        case = make_stage(channels=2, filters=2, in_lanes=2)
        PointwiseStage(channels=2, filters=2, in_lanes=2, out_lanes=2, activation="linear",
                       kernel_raw=case.kernel, bias_raw=np.ones(2, dtype=int), use_bias=False,
                       **case.formats)


def test_kernel_outside_its_format_is_refused():
    with pytest.raises(LayerError, match="raw pointwise kernel values"):
        make_stage(channels=2, filters=2, in_lanes=2, kernel=np.full((2, 2), 99))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), formats=st.sampled_from(sorted(FORMAT_SETS)),
       activation=st.sampled_from(["linear", "relu", "relu6"]),
       groups=st.integers(1, 3), lanes=st.integers(1, 4), filters=st.integers(1, 6),
       stall=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2 ** 16))
def test_hypothesis_sweep(data, formats, activation, groups, lanes, filters, stall, seed):
    out_lanes = data.draw(st.sampled_from([q for q in range(1, filters + 1)
                                           if filters % q == 0]), label="out_lanes")
    reuse = data.draw(st.integers(1, lanes), label="reuse")
    params = dict(channels=groups * lanes, filters=filters, in_lanes=lanes,
                  out_lanes=out_lanes, reuse=reuse, formats=formats, activation=activation,
                  seed=seed)
    rng = np.random.default_rng(seed)
    if not data.draw(st.booleans(), label="port weights"):
        case = make_stage(**params)
        check(case, case.frames(2, 2, 2, rng), stall=stall, seed=seed)
        return
    # port weights: the second frame gets a load's weights (the address mapping of every
    # group, phase and multiplier slot)
    case = port_stage(**params)
    frames = case.frames(2, 2, 2, rng)
    kernel, bias = other_weights(case, rng)
    outputs = run_loads(case, frames, {1: load_beats(kernel, bias, case.plan.load_width)},
                        stall=stall, seed=seed)
    np.testing.assert_array_equal(outputs[:1], case.expected(frames[:1]))
    np.testing.assert_array_equal(outputs[1], _expected_with(case, frames[1], kernel, bias))


# -- weights loaded through the port ---------------------------------------------------------

def load_beats(kernel, bias, width, use_bias=True):
    """A load's beats: the kernel (C*M, F) in Keras order, then the bias."""
    values = list(np.asarray(kernel).reshape(-1)) + (list(bias) if use_bias else [])
    mask = (1 << width) - 1
    return [(int(v) & mask, int(n == len(values) - 1)) for n, v in enumerate(values)]


def port_stage(seed=0, use_bias=True, **params):
    case = make_stage(seed=seed, **params)
    if not use_bias:
        case.bias = np.zeros_like(case.bias)
    plan = case.plan
    case.plan = PointwisePlan(channels=plan.channels, filters=plan.filters,
                              in_lanes=plan.in_lanes, out_lanes=plan.out_lanes,
                              reuse=plan.reuse, activation=case.activation,
                              kernel_raw=case.kernel, bias_raw=case.bias, weights="port",
                              use_bias=use_bias, **case.formats)
    return case


def other_weights(case, rng):
    pw, b = case.formats["pointwise"], case.formats["bias"]
    return (rng.integers(pw.raw_min, pw.raw_max + 1, size=case.kernel.shape),
            rng.integers(b.raw_min, b.raw_max + 1, size=case.bias.shape))


def run_loads(case, frames, loads, *, stall, seed, expected_error=False, extra=None):
    """Frames with weight loads before some of them (frame index -> beats); returns the
    outputs."""
    stage = PointwiseStage(case.plan)
    beats = frame_beats(frames, stage.in_lanes, case.formats["mid"].width)
    n, h, w, _ = frames.shape
    per_frame = h * w * stage.groups
    out_count = n * h * w * stage.out_beats
    run = run_stream(stage, stream_ports(stage), beats, out_count, stall=stall, seed=seed,
                     loads={k * per_frame: v for k, v in loads.items()})
    assert len(run.taken) == out_count
    assert run.flags() == expected_flags(n, h, w, stage.out_beats)
    assert run.error == expected_error
    return beats_to_frames(run.data(), (n, h, w, stage.filters), stage.out_lanes,
                           case.formats["output"])


def _expected_with(case, frames, kernel, bias):
    return pointwise_reference(frames, kernel, bias, activation=case.activation,
                               **case.formats)


@pytest.mark.parametrize("params", [
    dict(channels=4, filters=3, in_lanes=4),                         # one phase: real MACs
    dict(channels=6, filters=4, in_lanes=2, out_lanes=2),            # three groups
    dict(channels=8, filters=2, in_lanes=4, out_lanes=1, reuse=3,    # folded, R not
         formats="accum", activation="relu"),                        # dividing L
    dict(channels=3, filters=5, in_lanes=3, reuse=3, formats="fine_bias", use_bias=False),
])
def test_port_weights_swap_at_frame_starts(params):
    case = port_stage(**params)
    stage = case.plan
    assert stage.real_multipliers == stage.multipliers
    rng = np.random.default_rng(3)
    frames = case.frames(4, 2, 3, rng)
    width = stage.load_width
    kernel1, bias1 = other_weights(case, rng)
    kernel2, bias2 = other_weights(case, rng)
    if not stage.use_bias:
        bias1 = bias2 = case.bias        # zeros: a load has no bias values
    loads = {1: load_beats(kernel1, bias1, width, stage.use_bias),
             2: load_beats(kernel2, bias2, width, stage.use_bias)}
    outputs = run_loads(case, frames, loads, stall=0.25, seed=5)
    np.testing.assert_array_equal(outputs[0], case.expected(frames[:1])[0])
    np.testing.assert_array_equal(outputs[1], _expected_with(case, frames[1], kernel1, bias1))
    np.testing.assert_array_equal(outputs[2:], _expected_with(case, frames[2:], kernel2, bias2))


@pytest.mark.parametrize("damage", ["early_last", "missing_last"])
def test_malformed_load_is_discarded(damage):
    case = port_stage(channels=4, filters=2, in_lanes=2, out_lanes=1)
    stage = case.plan
    rng = np.random.default_rng(4)
    frames = case.frames(3, 2, 2, rng)
    kernel1, bias1 = other_weights(case, rng)
    kernel2, bias2 = other_weights(case, rng)
    bad = load_beats(kernel1, bias1, stage.load_width)
    if damage == "early_last":
        bad = bad[:5] + [(bad[5][0], 1)]
    else:
        bad = bad[:-1] + [(bad[-1][0], 0)]
    # frame 1 keeps the first weights; the good load after the bad one is frame 2's
    loads = {1: bad, 2: load_beats(kernel2, bias2, stage.load_width)}
    outputs = run_loads(case, frames, loads, stall=0.2, seed=6, expected_error=True)
    np.testing.assert_array_equal(outputs[:2], case.expected(frames[:2]))
    np.testing.assert_array_equal(outputs[2], _expected_with(case, frames[2], kernel2, bias2))
