#!/usr/bin/env python3
"""Compiles every Swift snippet in README.md, Docs/ and the DocC catalog against the library.

Each ```swift block becomes a function (async if it awaits) in a throwaway package that depends on this one by path and on nothing
else (so `import SharedMemory` must be enough); its imports are hoisted, and it may use the names the docs assume
without declaring them: `name` (a RegionName), `region` (an AnyRegion, borrowed), `socket` (a FileDescriptor), and
`repair()`, `handle(_:)`, `parse(_:)` (of a RawSpan). A block whose first line is `// Package.swift` is a manifest fragment: it
must name the package and the SharedMemory product. Run from anywhere; exits non-zero, with the compiler's words,
if any snippet does not compile.
"""
import glob, os, re, shutil, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
files = ["README.md"] + sorted(glob.glob("Docs/*.md", root_dir=root)) + \
    sorted(glob.glob("Sources/SharedMemory/SharedMemory.docc/*.md", root_dir=root))

functions, manifests, imports, origins = [], [], {"SharedMemory"}, []
for path in files:
    text = open(os.path.join(root, path)).read()
    for match in re.finditer(r"```swift\n(.*?)```", text, re.S):
        block = match.group(1)
        line = text[:match.start()].count("\n") + 2
        if block.startswith("// Package.swift"):
            manifests.append((path, line, block))
            continue
        body = []
        for code in block.splitlines():
            if code.startswith("import "):
                imports.add(code.split()[1])
            else:
                body.append("    " + code)
        index = len(functions)
        origins.append(f"{path}:{line}")
        effects = "async throws" if "await " in block else "throws"
        functions.append(f"// {path}:{line}\n"
                         f"func snippet{index}(name: RegionName, region: borrowing AnyRegion, socket: FileDescriptor) {effects} {{\n"
                         + "\n".join(body) + "\n}\n")

work = tempfile.mkdtemp(prefix="smsnippets-")
try:
    os.makedirs(f"{work}/Sources/Snippets")
    # Each manifest fragment names this package by path or URL: check its shape; the snippets depend on it by path.
    for path, line, block in manifests:
        if ".package(" not in block or '.product(name: "SharedMemory", package: "SharedMemory")' not in block:
            sys.exit(f"{path}:{line}: a Package.swift fragment without .package(...) and the SharedMemory product")
    open(f"{work}/Package.swift", "w").write(f"""// swift-tools-version:6.2
import PackageDescription
let package = Package(
    name: "Snippets",
    dependencies: [.package(name: "SharedMemory", path: "{root}")],
    targets: [.executableTarget(name: "Snippets", dependencies: [.product(name: "SharedMemory", package: "SharedMemory")])]
)
""")
    preamble = "\n".join(f"import {m}" for m in sorted(imports)) + """

func repair() {}
func handle(_ message: [UInt8]) {}
func parse(_ bytes: RawSpan) {}

"""
    open(f"{work}/Sources/Snippets/main.swift", "w").write(preamble + "\n".join(functions) + '\nprint("snippets compile")\n')
    build = subprocess.run(["swift", "build", "--package-path", work, "--scratch-path", os.path.join(root, ".build-snippets")],
                           capture_output=True, text=True)
    if build.returncode != 0:
        print(build.stdout[-20000:], build.stderr[-5000:], file=sys.stderr)
        source = (preamble + "\n".join(functions)).splitlines()
        starts = [i + 1 for i, code in enumerate(source) if code.startswith("func snippet")]
        failing = set()
        for number in re.findall(r"main\.swift:(\d+):\d+: error", build.stdout + build.stderr):
            before = [i for i, start in enumerate(starts) if start <= int(number)]
            if before: failing.add(origins[before[-1]])
        sys.exit(f"these snippets do not compile: {', '.join(sorted(failing)) or 'see above'}")
    print(f"{len(functions)} Swift snippets compile ({len(manifests)} Package.swift fragments checked)")
finally:
    shutil.rmtree(work)
