#!/usr/bin/env python3
"""The negative compile tests: each Swift file in Tests/NegativeCompile is a misuse the compiler must refuse.

Its comment line `// expect: TEXT` names a piece of the diagnostic it must produce (`// expect: compiles` marks the
control, which must compile). Each file is built as a target of its own in a throwaway package that depends on
this one by path; the run fails if a misuse compiles, if it fails for another reason than the one expected, or if
the control does not compile.
"""
import glob, os, re, shutil, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
cases = sorted(glob.glob(os.path.join(root, "Tests/NegativeCompile/*.swift")))
work = tempfile.mkdtemp(prefix="smnegative-")
failures = []
try:
    names = [os.path.splitext(os.path.basename(case))[0] for case in cases]
    targets = ",\n        ".join(f'.target(name: "{n}", dependencies: [.product(name: "SharedMemory", package: "SharedMemory")])' for n in names)
    open(f"{work}/Package.swift", "w").write(f"""// swift-tools-version:6.2
import PackageDescription
let package = Package(
    name: "NegativeCompile",
    dependencies: [.package(name: "SharedMemory", path: "{root}")],
    targets: [
        {targets}
    ]
)
""")
    for case, name in zip(cases, names):
        os.makedirs(f"{work}/Sources/{name}")
        shutil.copy(case, f"{work}/Sources/{name}/{name}.swift")
    for case, name in zip(cases, names):
        expected = re.search(r"^// expect: (.+)$", open(case).read(), re.M)
        if not expected:
            failures.append(f"{name}: no `// expect:` line")
            continue
        expected = expected.group(1).strip()
        build = subprocess.run(["swift", "build", "--package-path", work, "--scratch-path", os.path.join(root, ".build-snippets"),
                                "--target", name], capture_output=True, text=True)
        output = build.stdout + build.stderr
        errors = [line for line in output.splitlines() if f"{name}.swift:" in line and ": error:" in line]
        if expected == "compiles":
            if build.returncode != 0:
                failures.append(f"{name}: the control does not compile:\n" + "\n".join(errors or output.splitlines()[-20:]))
            else:
                print(f"{name}: compiles, as it should")
        elif build.returncode == 0:
            failures.append(f"{name}: the misuse compiles; it must fail with `{expected}`")
        elif not any(expected in line for line in errors):
            failures.append(f"{name}: refused, but not with `{expected}`:\n" + "\n".join(errors or output.splitlines()[-20:]))
        else:
            print(f"{name}: refused: {next(line for line in errors if expected in line).split(': error: ', 1)[1]}")
finally:
    shutil.rmtree(work)
if failures:
    sys.exit("\n".join(failures))
print(f"{len(cases)} negative compile tests behave")
