# The ring's and the publish/subscribe service's operations are the C headers' (Interop/c/smring.h, smpubsub.h),
# built into a small shared library that the package loads with ctypes: every load and store on the shared words has
# the memory ordering the wire format asks for, which plain Python reads and writes of a memoryview would not give.
# The headers are copied next to the C file at build time, so `pip install ./Interop/python` works from the
# repository.
import os, shutil
from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
for name in ("smring.h", "smpubsub.h"):
    repository_header = os.path.join(here, "..", "c", name)
    if os.path.exists(repository_header):
        shutil.copyfile(repository_header, os.path.join(here, "sharedmemory_ring", name))

setup(
    ext_modules=[Extension(
        "sharedmemory_ring._smring",
        sources=["sharedmemory_ring/_smring.c"],
        include_dirs=["sharedmemory_ring"],
        extra_compile_args=["-std=c11", "-O2"],
        libraries=["rt"],
    )],
    package_data={"sharedmemory_ring": ["smring.h", "smpubsub.h"]},
)
