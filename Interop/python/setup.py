# The ring's operations are the C header's (Interop/c/smring.h), built into a small shared library that the package
# loads with ctypes: every load and store on the shared words has the memory ordering the wire format asks for,
# which plain Python reads and writes of a memoryview would not give. The header is copied next to the C file at
# build time when it is not there yet, so `pip install ./Interop/python` works from the repository.
import os, shutil
from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
header = os.path.join(here, "sharedmemory_ring", "smring.h")
repository_header = os.path.join(here, "..", "c", "smring.h")
if os.path.exists(repository_header):
    shutil.copyfile(repository_header, header)

setup(
    ext_modules=[Extension(
        "sharedmemory_ring._smring",
        sources=["sharedmemory_ring/_smring.c"],
        include_dirs=["sharedmemory_ring"],
        extra_compile_args=["-std=c11", "-O2"],
        libraries=["rt"],
    )],
    package_data={"sharedmemory_ring": ["smring.h"]},
)
