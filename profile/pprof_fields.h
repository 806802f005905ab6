// Field numbers of perftools.profiles.Profile (github.com/google/pprof, proto/profile.proto),
// by name, for every writer and reader of pprof protobuf in the project: the library's
// dump writer (profile/dump_pb.cpp) and the tool's reader and symbolizer (tools/).
//
// Contract: constants only; no code, no includes beyond <cstdint>, so that the library
// (which must not pull in anything that allocates) and the tool can both include it.
#pragma once

#include <cstdint>

namespace leakalloc {
namespace pprof_fields {

// Profile
enum : uint32_t {
  kProfSampleType = 1, kProfSample = 2, kProfMapping = 3, kProfLocation = 4, kProfFunction = 5,
  kProfStringTable = 6, kProfDropFrames = 7, kProfKeepFrames = 8, kProfTimeNanos = 9,
  kProfDurationNanos = 10, kProfPeriodType = 11, kProfPeriod = 12, kProfComment = 13,
  kProfDefaultSampleType = 14,
};
// ValueType
enum : uint32_t { kVtType = 1, kVtUnit = 2 };
// Sample
enum : uint32_t { kSampleLocation = 1, kSampleValue = 2, kSampleLabel = 3 };
// Label
enum : uint32_t { kLabelKey = 1, kLabelStr = 2, kLabelNum = 3, kLabelNumUnit = 4 };
// Mapping. The has_* flags tell pprof that the locations of this mapping already carry
// what they name, so that it does not look the addresses up again.
enum : uint32_t {
  kMapId = 1, kMapStart = 2, kMapLimit = 3, kMapOffset = 4, kMapFile = 5, kMapBuildId = 6,
  kMapHasFunctions = 7, kMapHasFilenames = 8, kMapHasLineNumbers = 9, kMapHasInlineFrames = 10,
};
// Location. Its repeated Line holds the inline chain at the address, innermost first.
enum : uint32_t { kLocId = 1, kLocMapping = 2, kLocAddress = 3, kLocLine = 4, kLocIsFolded = 5 };
// Line
enum : uint32_t { kLineFunction = 1, kLineLine = 2 };
// Function
enum : uint32_t { kFnId = 1, kFnName = 2, kFnSystemName = 3, kFnFilename = 4, kFnStartLine = 5 };

}  // namespace pprof_fields
}  // namespace leakalloc
