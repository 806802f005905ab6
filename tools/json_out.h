// JSON pieces shared by `report --format json` and `diff --format json`
// (docs/report.schema.json, docs/diff.schema.json). nlohmann-json from Debian.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "tools/symbolize.h"

namespace leakalloc_tool {

// One object per frame, leaf first; an address that stands for inlined functions gives
// several, the inlined ones with "inlined": true, as the text report prints them.
nlohmann::ordered_json frames_json(Symbolizer& sym, const std::vector<uint64_t>& pcs);

}  // namespace leakalloc_tool
