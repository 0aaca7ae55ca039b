// The tape's bookkeeping that the reverse walk does not need to be read with: freeing
// entries nobody can reach, erasing walked ones, finding and changing one entry, printing.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <memory>
#include <typeinfo>

#include "tinygrad-cpp/core/tape.h"

namespace tg {

// A type's name as the source spells it ("tg::PoolState", not the mangled "N2tg9PoolStateE"),
// without the namespaces a reader does not need.
static std::string readable_type_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(abi::__cxa_demangle(type.name(), nullptr, nullptr, &status),
                                                  std::free);
  std::string name = status == 0 && demangled ? demangled.get() : type.name();
  for (const std::string prefix : {"tg::", "(anonymous namespace)::"})
    for (size_t at; (at = name.find(prefix)) != std::string::npos;) name.erase(at, prefix.size());
  return name;
}

void Entry::throw_wrong_state(const std::type_info& expected) const {
  throw Error(fmt::format("backward of {} (entry #{}): the rule expects saved state of type {}, the entry holds {}",
                          name(), seq, readable_type_name(expected),
                          state ? readable_type_name(typeid(*state)) : std::string("none")));
}

// An entry whose output only the entry itself still holds can never be reached by a
// backward: no root can lead to it. Dropping it releases its inputs, which may leave an
// older entry in the same state, so one pass from the newest entry to the oldest finds all.
void Tape::drop_unreachable() {
  std::vector<uint64_t> unreachable;
  for (size_t i = entries_.size(); i-- > 0;) {
    Entry& entry = entries_[i];
    if (entry.output.impl_ptr().use_count() != 1) continue;
    unreachable.push_back(entry.seq);
    entry.inputs.clear();  // may leave an older entry's output held by nobody: found as the loop goes on
    entry.state.reset();
  }
  erase(std::move(unreachable));
}

void Tape::erase(std::vector<uint64_t> seqs) {
  std::sort(seqs.begin(), seqs.end());
  std::erase_if(entries_, [&](const Entry& e) { return std::binary_search(seqs.begin(), seqs.end(), e.seq); });
}

const Entry* Tape::producer(const Tensor& t) const {
  return const_cast<Tape*>(this)->find(t.impl()->producer_seq);
}

void Tape::discard_last() {
  if (entries_.empty()) return;
  entries_.back().output.impl()->producer_seq = 0;
  entries_.pop_back();
}

void Tape::set_rule(const Tensor& output, BackwardRule rule) {
  Entry* entry = find(output.impl()->producer_seq);
  if (!entry) throw Error("set_rule: the tensor was not produced by an op on this thread's tape");
  entry->override_rule = std::move(rule);
}

std::string Tape::str() const {
  std::string out;
  for (const Entry& e : entries_) {
    std::string inputs;
    for (const Tensor& t : e.inputs) {
      if (!inputs.empty()) inputs += ' ';
      inputs += t.defined() ? shape_str(t.shape()) : std::string("-");
    }
    std::string line = fmt::format("#{:<4} {:<20} {} -> {}", e.seq, e.name(), inputs, shape_str(e.output.shape()));
    const std::string state = e.state ? e.state->describe() : std::string();
    if (!state.empty()) line += "  " + state;
    if (e.override_rule) line += "  (rule overridden)";
    out += line + "\n";
  }
  return out;
}

void Tape::print() const { std::fputs(str().c_str(), stdout); }

}  // namespace tg
