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

_NVCC_FLAGS = [
    "-c",
    "-O3",
    "-std=c++17",
    "-lineinfo",
    "-Xcompiler",
    "-fPIC",
    "-Xcompiler",
    "-Wall",
]

def _cuda_objects_impl(ctx):
    """Compiles each .cu of `srcs` with nvcc, seeing the headers of `deps` (and their defines)."""
    compilation = [dep[CcInfo].compilation_context for dep in ctx.attr.deps]
    headers = depset(ctx.files.hdrs, transitive = [c.headers for c in compilation])
    include_dirs = depset(transitive = [c.includes for c in compilation] +
                                       [c.system_includes for c in compilation] +
                                       [c.quote_includes for c in compilation])
    defines = depset(transitive = [c.defines for c in compilation])
    objects = []
    for src in ctx.files.srcs:
        out = ctx.actions.declare_file("_cuda_objs/%s/%s.pic.o" % (ctx.label.name, src.basename[:-len(".cu")]))
        if not ctx.attr.enabled:
            ctx.actions.run_shell(
                outputs = [out],
                inputs = [src],
                command = "echo 'ERROR: %s is CUDA code. Build it with --config=cuda on a " % src.path +
                          "machine with /usr/local/cuda.' >&2; exit 1",
            )
        else:
            args = ctx.actions.args()
            args.add_all(_NVCC_FLAGS)
            args.add("-gencode=arch=compute_%s,code=sm_%s" % (ctx.attr.arch, ctx.attr.arch))
            args.add("-I.")
            args.add("-I" + ctx.bin_dir.path)
            args.add_all(include_dirs, format_each = "-I%s")
            args.add_all(defines, format_each = "-D%s")
            args.add(src.path)
            args.add("-o", out.path)
            ctx.actions.run(
                executable = "/usr/local/cuda/bin/nvcc",
                arguments = [args],
                inputs = depset([src], transitive = [headers]),
                outputs = [out],
                mnemonic = "Nvcc",
                progress_message = "nvcc %s" % src.short_path,
                use_default_shell_env = True,
            )
        objects.append(out)
    return [DefaultInfo(files = depset(objects))]

_cuda_objects = rule(
    implementation = _cuda_objects_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cu"]),
        "hdrs": attr.label_list(allow_files = True),
        "deps": attr.label_list(providers = [CcInfo]),
        "enabled": attr.bool(),
        "arch": attr.string(default = "90"),
    },
)

def troupe_cuda_library(name, srcs, hdrs = [], deps = [], cuda_hdrs = [], arch = "90", **kwargs):
    """Compiles the .cu files of `srcs` with nvcc for sm_90 and links them like a cc_library.

    Other `srcs` (.cc) are host code compiled by the C++ toolchain, with the CUDA headers
    available. `hdrs` are the public headers: they must not include CUDA headers, so CPU code
    can include them. nvcc sees `hdrs`, `cuda_hdrs` (private headers, e.g. .cuh) and every header
    of `deps`. `arch` is the target: "90" (H100/H200, the default) or "90a" for code that uses
    Hopper-only instructions (wgmma). Without --config=cuda the nvcc step fails with a message
    that says so.
    """
    cu_srcs = [src for src in srcs if src.endswith(".cu")]
    host_srcs = [src for src in srcs if not src.endswith(".cu")]
    all_deps = deps + ["//third_party:cuda_runtime"]
    objects = []
    if cu_srcs:
        _cuda_objects(
            name = name + "_nvcc",
            srcs = cu_srcs,
            hdrs = hdrs + cuda_hdrs,
            deps = all_deps,
            arch = arch,
            enabled = select({
                "//tools:cuda_enabled": True,
                "//conditions:default": False,
            }),
            tags = CUDA_TAGS,
            visibility = ["//visibility:private"],
        )
        objects = [":" + name + "_nvcc"]
    native.cc_library(
        name = name,
        srcs = objects + host_srcs,
        hdrs = hdrs,
        copts = TROUPE_COPTS + kwargs.pop("copts", []),
        deps = all_deps,
        tags = CUDA_TAGS + kwargs.pop("tags", []),
        **kwargs
    )

def troupe_cuda_binary(name, tags = [], **kwargs):
    """A binary that needs a GPU (a benchmark): CI compiles it, the GPU bundle carries it."""
    troupe_cc_binary(name = name, tags = CUDA_TAGS + tags, **kwargs)

def troupe_cuda_test(name, tags = [], **kwargs):
    """A test that needs a GPU: CI compiles it, the GPU bundle runs it."""
    troupe_cc_test(name = name, tags = CUDA_TAGS + tags, **kwargs)
