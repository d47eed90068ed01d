{
  "targets": [
    {
      "target_name": "node_lws",
      "sources": [
        "<!@(node -p \"require('fs').readFileSync('native/sources.txt','utf8').trim().split(/\\s+/).join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags": [
        "<!@(pkg-config --cflags libwebsockets)",
        "<!@(node scripts/libev-flags.cjs --cflags)",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Wno-missing-field-initializers",
        "-fvisibility=hidden"
      ],
      "cflags_cc": ["-std=c++17", "-fvisibility=hidden"],
      "cflags_cc!": ["-std=gnu++17"],
      "libraries": [
        "<!@(pkg-config --libs libwebsockets)",
        "-lwebsockets",
        "<!@(node scripts/libev-flags.cjs --libs)",
        "<!@(node scripts/node-libs.cjs --libs)",
        "-lpthread"
      ],
      "ldflags": ["-pthread"],
      "configurations": {
        "Release": {
          "cflags": ["-O2"],
          "cflags!": ["-O3"],
          "cflags_cc": ["-O2"],
          "cflags_cc!": ["-O3"]
        }
      },
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
        "GCC_OPTIMIZATION_LEVEL": "2",
        "MACOSX_DEPLOYMENT_TARGET": "11.0",
        "OTHER_CFLAGS": [
          "<!@(pkg-config --cflags libwebsockets)",
          "<!@(node scripts/libev-flags.cjs --cflags)",
          "-Wall",
          "-Wextra",
          "-Wno-unused-parameter",
          "-Wno-missing-field-initializers"
        ]
      }
    }
  ]
}
