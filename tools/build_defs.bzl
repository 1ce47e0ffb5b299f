"""Thin macros that every BUILD file in Troupe uses.

They add the project's warnings once and keep CUDA out of CPU-only builds:
  troupe_cc_library / troupe_cc_binary / troupe_cc_test   wrap the native rules;
  troupe_cuda_library                                     compiles .cu files with nvcc;
  troupe_cuda_test                                        a test that needs a GPU to run.

CUDA targets carry the tags "cuda" and "manual": `bazel test //...` never builds them, and
`.ci/run` builds them (compile only) with --config=cuda.
"""

TROUPE_COPTS = [
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
]

CUDA_TAGS = [
    "cuda",
    "manual",
]

def troupe_cc_library(name, copts = [], **kwargs):
    native.cc_library(name = name, copts = TROUPE_COPTS + copts, **kwargs)

def troupe_cc_binary(name, copts = [], **kwargs):
    native.cc_binary(name = name, copts = TROUPE_COPTS + copts, **kwargs)

def troupe_cc_test(name, copts = [], deps = [], size = "small", **kwargs):
    """A GoogleTest test; "small" (60 s) unless it says otherwise.

    Pass `main = False` to supply your own main().
    """
    main = kwargs.pop("main", True)
    test_deps = ["//third_party:gtest_main" if main else "//third_party:gtest"]
    native.cc_test(
        name = name,
        size = size,
        copts = TROUPE_COPTS + copts,
        deps = deps + test_deps,
        **kwargs
    )

def troupe_cc_benchmark(name, copts = [], deps = [], **kwargs):
    """A Google Benchmark binary; run it by hand, never from `bazel test`."""
    native.cc_binary(
        name = name,
        copts = TROUPE_COPTS + copts,
        deps = deps + ["//third_party:benchmark_main"],
        **kwargs
    )

def _nvcc_command(src, out):
    return " ".join([
        "/usr/local/cuda/bin/nvcc",
        "-c",
        "-O3",
        "-std=c++17",
        "-lineinfo",
        "-Xcompiler -fPIC",
        "-Xcompiler -Wall",
        "-gencode=arch=compute_90,code=sm_90",
        "-I.",
        "-I$(GENDIR)",
        "$(location %s)" % src,
        "-o $(location %s)" % out,
    ])

def troupe_cuda_library(name, srcs, hdrs = [], deps = [], cuda_hdrs = [], **kwargs):
    """Compiles the .cu files of `srcs` with nvcc for sm_90 and links them like a cc_library.

    Other `srcs` (.cc) are host code compiled by the C++ toolchain, with the CUDA headers
    available. `hdrs` are the public headers: they must not include CUDA headers, so CPU code
    can include them. `cuda_hdrs` are extra headers the .cu files include. Without
    --config=cuda the nvcc step fails with a message that says so.
    """
    objects = []
    for src in srcs:
        if not src.endswith(".cu"):
            continue
        stem = src[:-len(".cu")]
        out = "_cuda_objs/%s/%s.pic.o" % (name, stem)
        native.genrule(
            name = "%s_%s_nvcc" % (name, stem.replace("/", "_")),
            srcs = [src] + hdrs + cuda_hdrs,
            outs = [out],
            cmd = select({
                "//tools:cuda_enabled": _nvcc_command(src, out),
                "//conditions:default": "echo 'ERROR: %s is CUDA code. Build it with " % src +
                                        "--config=cuda on a machine with /usr/local/cuda.' >&2; " +
                                        "exit 1",
            }),
            tags = CUDA_TAGS,
            visibility = ["//visibility:private"],
        )
        objects.append(out)
    host_srcs = [src for src in srcs if not src.endswith(".cu")]
    native.cc_library(
        name = name,
        srcs = objects + host_srcs + cuda_hdrs,
        hdrs = hdrs,
        copts = TROUPE_COPTS + kwargs.pop("copts", []),
        deps = deps + ["//third_party:cuda_runtime"],
        tags = CUDA_TAGS + kwargs.pop("tags", []),
        **kwargs
    )

def troupe_cuda_test(name, tags = [], **kwargs):
    """A test that needs a GPU: CI compiles it, the GPU bundle runs it."""
    troupe_cc_test(name = name, tags = CUDA_TAGS + tags, **kwargs)
