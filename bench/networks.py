"""Real networks on the accelerator: program size, compile time, cycles and array utilization.

For each network (the digits zoo, CIFAR ResNet-20 at 32x32, ResNet-18 at 224x224, MobileNetV3-Small at
32x32; SqueezeNet 1.1, MobileNetV2 (also at 96x96), EfficientNet-B0 and ShuffleNetV2 x0.5 at 224x224, a
tiny ViT and MLP-Mixer, LSTM and GRU classifiers over 8 steps, with their host ops; random weights with
measured BatchNorm statistics, W8A8 post-training quantization) and each array, one row: layers, host
ops, instructions, program bytes, segments of instr_depth, seconds to lower and compile, cycles per image,
and the array utilization (the network's own MACs / (cycles x rows x cols)) over the whole network, its
dense 3x3 convolutions and its depthwise ones; "issued" counts the MACs the array issues instead (every
lane of a tile, a depthwise weight's zero blocks included: the hardware MAC counter's). From the
compile-time cycle profile (emu/compiler/profile.py, equal to golden's count).

    python bench/networks.py                     # all networks, 8x8 and 16x16 (a few minutes)
    python bench/networks.py --nets resnet20 --arrays 8x8
"""
from __future__ import annotations

import argparse
import time

from emu.compiler.codegen import compile_graph
from emu.compiler.profile import cycle_profile
from emu.contract.config import AccelConfig
from emu.contract.isa import INSTR_BYTES
from emu.frontend import load_pt2, lower

NETS = ("digits-mlp", "digits-cnn", "resnet20", "resnet18", "mobilenet_v3_small-32", "squeezenet1_1", "mobilenet_v2",
        "mobilenet_v2-96", "efficientnet_b0", "shufflenet_v2_x0_5", "vit_tiny", "mixer_tiny", "lstm", "gru")


def _model(name: str):
    if name.startswith("digits-"):
        from emu.zoo import digits
        return load_pt2(digits.checkpoint("w8a8", name.split("-")[1]))
    from emu.zoo.vision import quantized
    arch, _, resolution = name.partition("-")      # "-32": at 32x32 instead of the architecture's own size
    return quantized(arch, resolution=int(resolution) if resolution else None)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default=",".join(NETS), help=f"comma-separated, from {', '.join(NETS)}")
    ap.add_argument("--arrays", default="8x8,16x16", help="comma-separated ROWSxCOLS")
    ap.add_argument("--batch", type=int, default=1, help="samples per run (default 1); cycles are per image")
    args = ap.parse_args()
    arrays = [tuple(int(v) for v in a.split("x")) for a in args.arrays.split(",")]
    print(f"{'network':<21} {'array':>5} {'layers':>6} {'host':>4} {'instrs':>9} {'prog KiB':>9} {'segs':>5} "
          f"{'lower s':>7} {'compile s':>9} {'cycles/img':>12} {'util':>6} {'issued':>6} {'util 3x3':>8} "
          f"{'util dw':>7} {'dw issued':>9}")
    for net in args.nets.split(","):
        ep = _model(net)
        t0 = time.perf_counter()
        graph = lower(ep)
        t_lower = time.perf_counter() - t0
        for rows, cols in arrays:
            cfg = AccelConfig(rows=rows, cols=cols)
            t0 = time.perf_counter()
            program = compile_graph(graph, cfg, batch=args.batch)
            t_compile = time.perf_counter() - t0
            layers = cycle_profile(program)
            cycles = sum(l.cycles for l in layers) / args.batch

            def util(kept, issued=False):
                busy = sum(l.cycles for l in kept) * cfg.macs
                return sum(l.macs if issued else l.network_macs for l in kept) / busy if busy else 0.0
            conv3 = [l for l in layers if l.kind.startswith("Conv2d 3x3/") and l.kind[-2:] != "dw"]
            dw = [l for l in layers if l.kind.endswith(" dw")]
            hosts = sum(type(n).__name__ == "Host" for n in graph.nodes)
            print(f"{net:<21} {rows:>2}x{cols:<2} {len(graph.nodes):>6} {hosts:>4} {program.prog_len:>9,} "
                  f"{program.prog_len * INSTR_BYTES / 1024:>9,.0f} {len(program.segments):>5} {t_lower:>7.2f} "
                  f"{t_compile:>9.2f} {cycles:>12,.0f} {100 * util(layers):>5.1f}% "
                  f"{100 * util(layers, True):>5.1f}% {100 * util(conv3):>7.1f}% {100 * util(dw):>6.1f}% "
                  f"{100 * util(dw, True):>8.1f}%", flush=True)


if __name__ == "__main__":
    main()
