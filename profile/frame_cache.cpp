#include "profile/frame_cache.h"

#include <dlfcn.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <atomic>
#include <cstring>

#include "base/base.h"

namespace leakalloc {
namespace frame_cache {

namespace {

// DWARF register numbers of x86-64 (System V psABI, figure 3.36).
constexpr uint64_t kRegRbp = 6;
constexpr uint64_t kRegRsp = 7;
constexpr uint64_t kRegRa = 16;

enum Kind : uint8_t {
  kStep = 1,       // an ordinary frame: apply the recipe
  kEnd = 2,        // the outermost frame (its return address rule is "undefined")
  kLibunwind = 3,  // something the recipe cannot express: libunwind walks this stack
};

// How to get from a frame to its caller. CFA = (cfa_bp ? %rbp : %rsp) + cfa_off; the
// return address is at CFA - 8; the caller's %rbp is at CFA + bp_off, or untouched when
// bp_off is 0 (nothing is ever saved at the CFA itself: that is the caller's stack).
struct Recipe {
  int32_t cfa_off;
  int16_t bp_off;
  uint8_t kind;
  uint8_t cfa_bp;
};

// Open addressing over 2^16 slots of (address, recipe), 1 MiB reserved and committed as
// used. Readers take no lock: a slot is claimed with a CAS on its key (0 -> kClaimed), its
// recipe written, and then its key published with release; a key, once published, keeps
// its recipe until flush() empties the slots. A reader checks the key again after reading
// the recipe, so a slot emptied and refilled in between (only after a dlclose) is not
// mistaken for the one it looked up.
struct Slot {
  std::atomic<uint64_t> key;     // 0: empty
  std::atomic<uint64_t> recipe;  // pack(Recipe)
};
constexpr unsigned kSlotsLog2 = 16;
constexpr uint32_t kSlots = 1u << kSlotsLog2;
constexpr int kProbes = 8;
constexpr uint64_t kClaimed = 1;  // never an address looked up (that is at least 4 KiB)

Slot* g_slots = nullptr;
// Pages of the slot table written so far (its share of the resident memory).
constexpr uint32_t kSlotsPerPage = 4096 / sizeof(Slot);
std::atomic<uint64_t> g_pages_written[kSlots / kSlotsPerPage / 64];
std::atomic<uint64_t> g_misses{0};
std::atomic<uint64_t> g_gave_up{0};
std::atomic<uint64_t> g_generation{0};  // bumped by flush()
std::atomic<bool> g_enabled{true};

LA_ALWAYS_INLINE uint32_t slot_of(uintptr_t key) {
  return static_cast<uint32_t>((key * 0x9E3779B97F4A7C15ull) >> (64 - kSlotsLog2));
}

// A recipe as one word, decoded with shifts in walk(): cfa_off in bits 0-31, bp_off in
// 32-47, kind in 48-55, cfa_bp in 56-63.
LA_ALWAYS_INLINE uint64_t pack(Recipe r) {
  return uint64_t{static_cast<uint32_t>(r.cfa_off)} | uint64_t{static_cast<uint16_t>(r.bp_off)} << 32 |
         uint64_t{r.kind} << 48 | uint64_t{r.cfa_bp} << 56;
}

LA_ALWAYS_INLINE bool lookup(uintptr_t key, uint64_t* out) {
  uint32_t s = slot_of(key);
  for (int i = 0; i < kProbes; ++i) {
    Slot& slot = g_slots[(s + i) & (kSlots - 1)];
    uint64_t k = slot.key.load(std::memory_order_acquire);
    if (k == key) {
      uint64_t v = slot.recipe.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (LA_UNLIKELY(slot.key.load(std::memory_order_relaxed) != key)) return false;
      *out = v;
      return true;
    }
    if (k == 0) return false;
  }
  return false;
}

// Publishes a recipe computed while the generation was `gen`. Returns false when the
// probe sequence is full (the caller then leaves this stack to libunwind).
bool insert(uintptr_t key, Recipe r, uint64_t gen) {
  uint32_t s = slot_of(key);
  for (int i = 0; i < kProbes; ++i) {
    Slot& slot = g_slots[(s + i) & (kSlots - 1)];
    uint64_t cur = slot.key.load(std::memory_order_acquire);
    if (cur == key) return true;  // another thread got there first
    if (cur != 0 || !slot.key.compare_exchange_strong(cur, kClaimed, std::memory_order_acquire)) {
      if (cur == key) return true;
      continue;
    }
    uint32_t page = ((s + i) & (kSlots - 1)) / kSlotsPerPage;
    g_pages_written[page / 64].fetch_or(uint64_t{1} << (page % 64), std::memory_order_relaxed);
    slot.recipe.store(pack(r), std::memory_order_relaxed);
    // seq_cst: ordered before the generation check below (a flush() that bumps the
    // generation after that check clears this key after this store).
    slot.key.store(key, std::memory_order_seq_cst);
    // A flush() that ran while the recipe was being computed may have unmapped the code
    // it describes: take it back out.
    if (g_generation.load(std::memory_order_seq_cst) != gen) {
      uint64_t mine = key;
      slot.key.compare_exchange_strong(mine, 0, std::memory_order_relaxed);
    }
    return true;
  }
  return false;
}

// ---- Reading the unwind tables ---------------------------------------------------------
// Every read is bounded by the end of the record being parsed; a malformed table makes
// the frame kLibunwind rather than a fault or a wrong recipe.

struct Reader {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;

  template <typename T>
  T fixed() {
    T v{};
    if (end - p < static_cast<ptrdiff_t>(sizeof(T))) { ok = false; return v; }
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  uint64_t uleb() {
    uint64_t v = 0;
    for (unsigned shift = 0; ; shift += 7) {
      if (p >= end || shift > 63) { ok = false; return 0; }
      uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
  }
  int64_t sleb() {
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b;
    do {
      if (p >= end || shift > 63) { ok = false; return 0; }
      b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < 64 && (b & 0x40)) v |= ~uint64_t{0} << shift;
    return static_cast<int64_t>(v);
  }
  void skip(uint64_t n) {
    if (static_cast<uint64_t>(end - p) < n) { ok = false; return; }
    p += n;
  }

  // A DW_EH_PE_* encoded pointer. `data_base` serves DW_EH_PE_datarel (only the
  // .eh_frame_hdr uses it). Indirect, text-, function-relative and aligned encodings are
  // not used by x86-64 toolchains for the fields read here.
  uintptr_t encoded(uint8_t enc, uintptr_t data_base = 0) {
    const uint8_t* at = p;
    uint64_t v;
    switch (enc & 0x0f) {
      case 0x00: v = fixed<uint64_t>(); break;
      case 0x01: v = uleb(); break;
      case 0x02: v = fixed<uint16_t>(); break;
      case 0x03: v = fixed<uint32_t>(); break;
      case 0x04: v = fixed<uint64_t>(); break;
      case 0x09: v = static_cast<uint64_t>(sleb()); break;
      case 0x0a: v = static_cast<uint64_t>(static_cast<int64_t>(fixed<int16_t>())); break;
      case 0x0b: v = static_cast<uint64_t>(static_cast<int64_t>(fixed<int32_t>())); break;
      case 0x0c: v = fixed<uint64_t>(); break;
      default: ok = false; return 0;
    }
    switch (enc & 0x70) {
      case 0x00: break;
      case 0x10: v += reinterpret_cast<uintptr_t>(at); break;
      case 0x30:
        if (data_base == 0) ok = false;
        v += data_base;
        break;
      default: ok = false;
    }
    if (enc & 0x80) ok = false;
    return v;
  }
};

// The FDE covering `addr` through the object's .eh_frame_hdr binary-search table.
const uint8_t* find_fde(uintptr_t addr) {
  dl_find_object dlfo;
  if (_dl_find_object(reinterpret_cast<void*>(addr), &dlfo) != 0 || dlfo.dlfo_eh_frame == nullptr)
    return nullptr;
  const uint8_t* hdr = static_cast<const uint8_t*>(dlfo.dlfo_eh_frame);
  // version, eh_frame_ptr encoding, fde_count encoding, table encoding
  if (hdr[0] != 1 || hdr[2] == 0xff || hdr[3] != 0x3b) return nullptr;  // 0x3b: datarel sdata4
  Reader r{hdr + 4, hdr + 4 + 16};
  uintptr_t base = reinterpret_cast<uintptr_t>(hdr);
  r.encoded(hdr[1], base);
  uint64_t count = r.encoded(hdr[2], base);
  if (!r.ok || count == 0) return nullptr;
  const int32_t* table = reinterpret_cast<const int32_t*>(r.p);  // (initial location, FDE) pairs
  uint64_t lo = 0, hi = count;  // the answer is the last entry with location <= addr
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (base + static_cast<intptr_t>(table[2 * mid]) <= addr) lo = mid;
    else hi = mid;
  }
  if (base + static_cast<intptr_t>(table[2 * lo]) > addr) return nullptr;
  return hdr + table[2 * lo + 1];
}

// The rules the walk needs, as the CFA program leaves them.
struct Rules {
  uint64_t cfa_reg = kRegRsp;
  int64_t cfa_off = 0;
  bool cfa_expr = false;
  enum How : uint8_t { kSame, kOffset, kUndefined, kOther };
  How bp = kSame, ra = kSame;
  int64_t bp_off = 0, ra_off = 0;
};

struct Cie {
  uint64_t code_align = 1;
  int64_t data_align = 1;
  uint8_t fde_enc = 0;
  bool has_aug_data = false;
  bool signal = false;
  Reader insns{nullptr, nullptr};
};

bool parse_cie(const uint8_t* cie, Cie* out) {
  uint32_t len;
  std::memcpy(&len, cie, 4);
  if (len == 0 || len == 0xffffffffu) return false;  // 64-bit DWARF is not produced for .eh_frame
  Reader r{cie + 4, cie + 4 + len};
  if (r.fixed<uint32_t>() != 0) return false;  // a CIE's id is 0 in .eh_frame
  uint8_t version = r.fixed<uint8_t>();
  if (version != 1 && version != 3) return false;
  const char* aug = reinterpret_cast<const char*>(r.p);
  while (r.p < r.end && *r.p != 0) ++r.p;
  r.skip(1);
  out->code_align = r.uleb();
  out->data_align = r.sleb();
  uint64_t ra_reg = version == 1 ? r.fixed<uint8_t>() : r.uleb();
  if (!r.ok || ra_reg != kRegRa) return false;
  if (aug[0] == 'z') {
    out->has_aug_data = true;
    uint64_t aug_len = r.uleb();
    Reader a{r.p, r.p + aug_len};
    if (aug_len > static_cast<uint64_t>(r.end - r.p)) return false;
    for (const char* c = aug + 1; *c != 0 && a.ok; ++c) {
      if (*c == 'R') out->fde_enc = a.fixed<uint8_t>();
      else if (*c == 'P') {  // the personality routine: skipped, never dereferenced
        uint8_t enc = a.fixed<uint8_t>();
        a.encoded(static_cast<uint8_t>(enc & 0x0f));
      } else if (*c == 'L') a.fixed<uint8_t>();
      else if (*c == 'S') out->signal = true;
      else break;  // unknown: its data is inside aug_len, skipped below
    }
    if (!a.ok) return false;
    r.p += aug_len;
  } else if (aug[0] != 0) {
    return false;  // old "eh" augmentations carry data of unknown size
  }
  out->insns = r;
  return r.ok;
}

// Runs a CFA program until the location passes `target`. `initial` holds the CIE's rules
// for DW_CFA_restore (nullptr while running the CIE itself).
bool run(Reader r, const Cie& cie, uintptr_t loc, uintptr_t target, const Rules* initial, Rules* st) {
  Rules saved[4];  // DW_CFA_remember_state; deeper nesting is not emitted by compilers
  int depth = 0;
  auto set_offset = [&](uint64_t reg, int64_t off) {
    if (reg == kRegRbp) { st->bp = Rules::kOffset; st->bp_off = off; }
    if (reg == kRegRa) { st->ra = Rules::kOffset; st->ra_off = off; }
  };
  auto set_how = [&](uint64_t reg, Rules::How how) {
    if (reg == kRegRbp) st->bp = how;
    if (reg == kRegRa) st->ra = how;
  };
  auto restore = [&](uint64_t reg) {
    if (initial == nullptr) return set_how(reg, Rules::kSame);
    if (reg == kRegRbp) { st->bp = initial->bp; st->bp_off = initial->bp_off; }
    if (reg == kRegRa) { st->ra = initial->ra; st->ra_off = initial->ra_off; }
  };
  auto advance = [&](uint64_t delta) {
    uintptr_t next = loc + delta * cie.code_align;
    if (next > target) return false;
    loc = next;
    return true;
  };
  while (r.p < r.end && r.ok) {
    uint8_t op = *r.p++;
    uint8_t low = op & 0x3f;
    switch (op & 0xc0) {
      case 0x40:  // DW_CFA_advance_loc
        if (!advance(low)) return true;
        continue;
      case 0x80:  // DW_CFA_offset
        set_offset(low, static_cast<int64_t>(r.uleb()) * cie.data_align);
        continue;
      case 0xc0:  // DW_CFA_restore
        restore(low);
        continue;
    }
    switch (op) {
      case 0x00: break;  // DW_CFA_nop
      case 0x01: {       // DW_CFA_set_loc
        uintptr_t next = r.encoded(cie.fde_enc);
        if (next > target) return r.ok;
        loc = next;
        break;
      }
      case 0x02: if (!advance(r.fixed<uint8_t>())) return r.ok; break;
      case 0x03: if (!advance(r.fixed<uint16_t>())) return r.ok; break;
      case 0x04: if (!advance(r.fixed<uint32_t>())) return r.ok; break;
      case 0x05: {  // DW_CFA_offset_extended
        uint64_t reg = r.uleb();
        set_offset(reg, static_cast<int64_t>(r.uleb()) * cie.data_align);
        break;
      }
      case 0x06: restore(r.uleb()); break;                     // DW_CFA_restore_extended
      case 0x07: set_how(r.uleb(), Rules::kUndefined); break;  // DW_CFA_undefined
      case 0x08: set_how(r.uleb(), Rules::kSame); break;       // DW_CFA_same_value
      case 0x09: {                                              // DW_CFA_register
        uint64_t reg = r.uleb();
        r.uleb();
        set_how(reg, Rules::kOther);
        break;
      }
      case 0x0a:  // DW_CFA_remember_state
        if (depth == 4) return false;
        saved[depth++] = *st;
        break;
      case 0x0b:  // DW_CFA_restore_state (the CFA rule is part of the state: GCC's
                  // epilogues remember, pop to CFA 8, and restore the body's offset)
        if (depth == 0) return false;
        *st = saved[--depth];
        break;
      case 0x0c:  // DW_CFA_def_cfa
        st->cfa_reg = r.uleb();
        st->cfa_off = static_cast<int64_t>(r.uleb());
        st->cfa_expr = false;
        break;
      case 0x0d: st->cfa_reg = r.uleb(); st->cfa_expr = false; break;      // def_cfa_register
      case 0x0e: st->cfa_off = static_cast<int64_t>(r.uleb()); break;     // def_cfa_offset
      case 0x0f: st->cfa_expr = true; r.skip(r.uleb()); break;            // def_cfa_expression
      case 0x10: case 0x16: {  // DW_CFA_expression, DW_CFA_val_expression
        uint64_t reg = r.uleb();
        r.skip(r.uleb());
        set_how(reg, Rules::kOther);
        break;
      }
      case 0x11: {  // DW_CFA_offset_extended_sf
        uint64_t reg = r.uleb();
        set_offset(reg, r.sleb() * cie.data_align);
        break;
      }
      case 0x12:  // DW_CFA_def_cfa_sf
        st->cfa_reg = r.uleb();
        st->cfa_off = r.sleb() * cie.data_align;
        st->cfa_expr = false;
        break;
      case 0x13: st->cfa_off = r.sleb() * cie.data_align; break;  // def_cfa_offset_sf
      case 0x14: case 0x15: {  // DW_CFA_val_offset(_sf): a value, not a saved location
        uint64_t reg = r.uleb();
        if (op == 0x14) r.uleb(); else r.sleb();
        set_how(reg, Rules::kOther);
        break;
      }
      case 0x2e: r.uleb(); break;  // DW_CFA_GNU_args_size
      case 0x2f: {                 // DW_CFA_GNU_negative_offset_extended
        uint64_t reg = r.uleb();
        set_offset(reg, -static_cast<int64_t>(r.uleb()) * cie.data_align);
        break;
      }
      default: return false;
    }
  }
  return r.ok;
}

// Reads the unwind tables for the frame at `addr`.
Recipe compute(uintptr_t addr) {
  Recipe fallback{0, 0, kLibunwind, 0};
  const uint8_t* fde = find_fde(addr);
  if (fde == nullptr) return fallback;
  uint32_t len, cie_ptr;
  std::memcpy(&len, fde, 4);
  std::memcpy(&cie_ptr, fde + 4, 4);
  if (len == 0 || len == 0xffffffffu || cie_ptr == 0) return fallback;
  Cie cie;
  if (!parse_cie(fde + 4 - cie_ptr, &cie) || cie.signal) return fallback;
  Reader r{fde + 8, fde + 4 + len};
  uintptr_t begin = r.encoded(cie.fde_enc);
  uintptr_t range = r.encoded(static_cast<uint8_t>(cie.fde_enc & 0x0f));
  if (!r.ok || addr < begin || addr - begin >= range) return fallback;
  if (cie.has_aug_data) r.skip(r.uleb());
  if (!r.ok) return fallback;

  Rules initial;
  if (!run(cie.insns, cie, begin, UINTPTR_MAX, nullptr, &initial)) return fallback;
  Rules st = initial;
  if (!run(r, cie, begin, addr, &initial, &st)) return fallback;

  if (st.ra == Rules::kUndefined) return Recipe{0, 0, kEnd, 0};
  if (st.cfa_expr || (st.cfa_reg != kRegRsp && st.cfa_reg != kRegRbp)) return fallback;
  if (st.ra != Rules::kOffset || st.ra_off != -8) return fallback;
  if (st.cfa_off < 8 || st.cfa_off > INT32_MAX) return fallback;
  Recipe out{static_cast<int32_t>(st.cfa_off), 0, kStep, static_cast<uint8_t>(st.cfa_reg == kRegRbp)};
  if (st.bp == Rules::kOffset) {
    if (st.bp_off >= 0 || st.bp_off < INT16_MIN) return fallback;
    out.bp_off = static_cast<int16_t>(st.bp_off);
  } else if (st.bp != Rules::kSame) {
    return fallback;
  }
  return out;
}

}  // namespace

void init() {
  if (g_slots != nullptr) return;
  g_slots = static_cast<Slot*>(os_reserve(kSlots * sizeof(Slot)));
  // Without it walk() leaves every stack to libunwind.
}

namespace {
// Leaves the stack to libunwind.
LA_NOINLINE int give_up() {
  g_gave_up.fetch_add(1, std::memory_order_relaxed);
  return -1;
}

// A frame not in the cache: reads the unwind tables, publishes the recipe. 0 when the
// cache is full (the stack is left to libunwind).
LA_NOINLINE uint64_t miss(uintptr_t key) {
  uint64_t gen = g_generation.load(std::memory_order_seq_cst);
  g_misses.fetch_add(1, std::memory_order_relaxed);
  Recipe r = compute(key);
  return insert(key, r, gen) ? pack(r) : 0;
}
}  // namespace

namespace {
// A bit for each memo entry whose tag is `tag`: every lookup, hit or miss, compares all
// eight, so they are compared four at a time.
LA_ALWAYS_INLINE uint32_t tags_equal(const uint32_t (&tags)[kMemoEntries], uint32_t tag) {
  static_assert(kMemoEntries == 8, "two vectors of four tags");
#if defined(__SSE2__)
  __m128i want = _mm_set1_epi32(static_cast<int>(tag));
  __m128i lo = _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tags)), want);
  __m128i hi = _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tags + 4)), want);
  return static_cast<uint32_t>(_mm_movemask_ps(_mm_castsi128_ps(lo)) | _mm_movemask_ps(_mm_castsi128_ps(hi)) << 4);
#else
  uint32_t match = 0;
  for (uint32_t e = 0; e < kMemoEntries; ++e) match |= uint32_t{tags[e] == tag} << e;
  return match;
#endif
}
}  // namespace

int walk(uintptr_t* out, size_t want, uintptr_t stack_hi, uintptr_t frame, MemoSet* memos) {
  if (LA_UNLIKELY(g_slots == nullptr || !g_enabled.load(std::memory_order_relaxed))) return -1;
  // The entry point's frame lies on this thread's stack, above us; anything else (a
  // stack switch, an unknown stack top) is left to libunwind.
  uintptr_t here = reinterpret_cast<uintptr_t>(&here);
  if (LA_UNLIKELY(frame < here || frame + 2 * sizeof(uintptr_t) > stack_hi || (frame & 7) != 0)) return -1;
  uint64_t gen = g_generation.load(std::memory_order_relaxed);
  Memo* memo = nullptr;  // where this walk is remembered
  if (memos != nullptr) {
    // The return address into the caller is every stack's first word: with the frame, it
    // tells most stacks apart by the tag alone.
    if (LA_UNLIKELY(memos->generation != gen || memos->want != want)) {
      for (uint32_t& t : memos->tag) t = 0;
      memos->generation = gen;
      memos->want = want;
    }
    uintptr_t ra0 = *reinterpret_cast<const uintptr_t*>(frame + sizeof(uintptr_t));
    uint32_t tag = memo_tag(frame, ra0);
    auto holds = [&](uint32_t e) {
      const Memo& m = memos->entry[e];
      if (m.frame != frame || m.value[0] != ra0) return false;
      // The words lie between the frame and the stack top: mapped, as they were. One
      // branch for all of them: a hit reads every word anyway.
      uintptr_t diff = 0;
      for (uint32_t i = 1; i < m.reads; ++i)
        diff |= *reinterpret_cast<const uintptr_t*>(m.addr[i]) ^ m.value[i];
      if (diff != 0) return false;
      memos->recent = e;
      memos->used[e] = ++memos->clock;
      return true;
    };
    // The entry hit or written last first (a loop allocating from one site), then the rest.
    uint32_t last = memos->recent;
    if (memos->tag[last] == tag && holds(last)) return kMemoHit;
    for (uint32_t match = tags_equal(memos->tag, tag) & ~(1u << last); match != 0; match &= match - 1)
      if (holds(static_cast<uint32_t>(__builtin_ctz(match)))) return kMemoHit;
    uint32_t victim = 0;
    for (uint32_t e = 1; e < kMemoEntries; ++e)
      if (memos->used[e] < memos->used[victim]) victim = e;
    memos->recent = victim;
    memos->used[victim] = ++memos->clock;
    ++memos->walks;
    memos->tag[victim] = 0;
    memo = &memos->entry[victim];
    memo->stack_id = 0;
    memo->pending = false;
    memo->frame = frame;
  }
  uint32_t reads = 0;
  auto read = [&](uintptr_t at) {
    uintptr_t v = *reinterpret_cast<const uintptr_t*>(at);
    if (memo != nullptr && reads < kMemoReads) {
      memo->addr[reads] = at;
      memo->value[reads] = v;
    }
    ++reads;
    return v;
  };
  // Where the current frame's %rbp was saved (the entry point's prologue saved its
  // caller's at frame[0]); it is read only when a CFA is %rbp-based (rare without frame
  // pointers), so a walk (and the memo) does not depend on what %rbp held where nothing
  // uses it: code built without frame pointers keeps loop variables there.
  uintptr_t bp_at = frame;
  uintptr_t bp = 0;
  uintptr_t sp = frame + 2 * sizeof(uintptr_t);  // the caller's, after the entry point returns
  uintptr_t ra = read(frame + sizeof(uintptr_t));
  if (ra == 0 || want == 0) return 0;
  out[0] = ra;
  size_t n = 1;
  while (n < want) {
    // A return address may be one past the function's last byte (a call to a noreturn
    // function); ra - 1 is inside the call instruction, in the caller's FDE.
    uintptr_t key = ra - 1;
    uint64_t r;
    if (LA_UNLIKELY(!lookup(key, &r)) && (r = miss(key)) == 0) return give_up();
    uint8_t kind = static_cast<uint8_t>(r >> 48);
    if (LA_UNLIKELY(kind != kStep)) {
      if (kind == kEnd) break;
      return give_up();
    }
    if ((r >> 56) != 0 && bp_at != 0) {  // this CFA needs %rbp: load the saved value now
      bp = read(bp_at);
      bp_at = 0;
    }
    uintptr_t cfa = ((r >> 56) != 0 ? bp : sp) + static_cast<intptr_t>(static_cast<int32_t>(r));
    // The caller's frame lies above this one and inside this thread's stack; anything
    // else means a stack switch or damaged registers, and libunwind decides.
    if (LA_UNLIKELY(cfa < sp + sizeof(uintptr_t) || cfa > stack_hi)) return give_up();
    ra = read(cfa - sizeof(uintptr_t));
    intptr_t bp_off = static_cast<int16_t>(r >> 32);
    if (bp_off != 0) {
      uintptr_t at = cfa + bp_off;
      if (LA_UNLIKELY(at < sp)) return give_up();
      bp_at = at;
    }
    sp = cfa;
    if (ra == 0) break;
    out[n++] = ra;
  }
  if (memo != nullptr && reads <= kMemoReads) {
    memo->reads = reads;
    memo->pending = true;
  }
  return static_cast<int>(n);
}

void flush() {
  if (g_slots == nullptr) return;
  g_generation.fetch_add(1, std::memory_order_seq_cst);
  for (uint32_t i = 0; i < kSlots; ++i) g_slots[i].key.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void set_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }

uint64_t bytes_in_use() {
  uint64_t pages = 0;
  for (const std::atomic<uint64_t>& w : g_pages_written)
    pages += static_cast<uint64_t>(__builtin_popcountll(w.load(std::memory_order_relaxed)));
  return pages * 4096;
}

Stats stats() {
  uint64_t entries = 0;
  if (g_slots != nullptr)
    for (uint32_t i = 0; i < kSlots; ++i) entries += g_slots[i].key.load(std::memory_order_relaxed) > kClaimed;
  return Stats{entries, g_misses.load(std::memory_order_relaxed), g_gave_up.load(std::memory_order_relaxed)};
}

}  // namespace frame_cache
}  // namespace leakalloc
