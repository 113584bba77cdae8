"""sim/objcache.py: the Verilator runtime's objects compiled once and copied into every later build."""
import sys

from sim.objcache import main

# a stand-in compiler: writes OUT (and OUT's .d) from SRC, and counts its runs in a file beside SRC
COMPILER = """
import sys, pathlib
args = sys.argv[1:]
out, src = pathlib.Path(args[args.index("-o") + 1]), pathlib.Path(args[-1])
out.write_bytes(b"object of " + src.read_bytes() + b" with " + " ".join(args[:-3]).encode())
out.with_suffix(".d").write_text(f"{out.name}: {src}")
runs = src.with_name("runs")
runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
"""


def test_runtime_objects_come_from_the_cache(tmp_path, monkeypatch):
    root, cache = tmp_path / "verilator", tmp_path / "cache"
    (root / "include").mkdir(parents=True)
    src = root / "include" / "verilated.cpp"
    src.write_text("runtime")
    compiler = tmp_path / "cxx.py"
    compiler.write_text(COMPILER)
    monkeypatch.setenv("VERILATOR_ROOT", str(root))
    monkeypatch.setenv("SYSTOLA_OBJCACHE", str(cache))

    def compile_in(build, *flags):
        build.mkdir(exist_ok=True)
        monkeypatch.chdir(build)
        assert main(["objcache.py", sys.executable, str(compiler), *flags, "-c", "-o", "verilated.o", str(src)]) == 0
        return (build / "verilated.o").read_bytes(), (build / "verilated.d").read_text()

    first = compile_in(tmp_path / "a", "-Os")
    assert compile_in(tmp_path / "b", "-Os") == first and (root / "include" / "runs").read_text() == "1"
    # other flags or another source: compiled again
    assert compile_in(tmp_path / "c", "-O2") != first and (root / "include" / "runs").read_text() == "2"
    src.write_text("runtime, next version")
    compile_in(tmp_path / "d", "-Os")
    assert (root / "include" / "runs").read_text() == "3"


def test_other_sources_are_compiled_as_they_are(tmp_path, monkeypatch):
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path / "verilator"))
    monkeypatch.setenv("SYSTOLA_OBJCACHE", str(tmp_path / "cache"))
    model = tmp_path / "Vtop.cpp"
    model.write_text("design")
    (tmp_path / "cxx.py").write_text(COMPILER)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["objcache.py", sys.executable, str(tmp_path / "cxx.py"), "-c", "-o", "Vtop.o", str(model)]) == 0
    assert (tmp_path / "runs").read_text() == "2" and not (tmp_path / "cache").exists()
