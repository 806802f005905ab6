// leak_error:true, the CI mode: at exit, fail the program (status 1) when old blocks
// remain, and say where they came from.
//
// Contract. start() runs from dump::start() (leakalloc's constructor, options loaded):
// with leak_error on, it keeps a duplicate of fd 2 (close-on-exec, numbered 255 or the
// lowest free number above it, so that it does not take the number a program expects
// its next open() to return), because the message must reach the user even from a
// program that closed its stderr before exit (GNU coreutils' close_stdout does). At exit
// the message goes to fd 2 if it is still open, else to that duplicate, else to
// /dev/tty. assess() and report() run in the exit hook (dump.cpp dump_at_exit) on a
// snapshot the hook took, with a ReentrancyGuard held; they allocate nothing (fixed
// arrays, FdWriter) and take no lock. No symbolizer runs in the process: stacks are
// printed as return addresses with module+offset, and the message names the dump file
// to give `leakalloc report` for names.
#pragma once

#include <cstddef>
#include <cstdint>

#include "profile/snapshot.h"

namespace leakalloc {
namespace leak_error {

void start();

constexpr int kTopStacks = 3;
struct Finding {
  snap::Totals total;  // old blocks, less the skipped ones (unsampled estimates)
  uint32_t stack[kTopStacks];  // the largest stacks by bytes; 0 = none
  snap::Totals per_stack[kTopStacks];
  uint32_t nstacks;    // stacks holding old blocks
  bool reach_checked;  // only lost blocks were counted (a reachability check ran)
};
// Old blocks of `s` (lost ones only when a reachability check filled it), less those
// whose records are in `skip`.
Finding assess(const snap::Snapshot& s, const uint32_t* skip, size_t nskip);
// Prints the failure: totals, what counted, the top stacks symbol-free, and `files`
// (the exit dump's files, space-separated; may be empty) to run `leakalloc report` on.
void report(const snap::Snapshot& s, const Finding& f, const char* files);

}  // namespace leak_error
}  // namespace leakalloc
