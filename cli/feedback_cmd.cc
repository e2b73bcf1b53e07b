// attune feedback add | import | export | ls | stats | forget | repair
// See docs/feedback.md for examples.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <set>

#include "attune/core/file.h"
#include "attune/feedback/codec.h"
#include "attune/feedback/validate.h"
#include "attune/replay/repair.h"
#include "attune/replay/store.h"
#include "cli/cli_common.h"
#ifdef ATTUNE_HAVE_RUNTIME_CLI
#include "attune/adapters/registry.h"
#include "attune/trainer/forget.h"
#endif

namespace attune::cli {
namespace {

using replay::Store;

constexpr size_t kImportChunk = 256;  // events per commit (one fsync)
// Most events `ls --limit` takes (more would be "all" anyway).
constexpr uint64_t kMaxListLimit = 1000000000;

std::string StorePath(const GlobalOptions& g) { return ResolveDataDir(g.data_dir) + "/replay"; }

// Only commands that store events create a store: a failed or empty
// command must not leave a new store behind.
Result<std::unique_ptr<Store>> OpenForWrite(const GlobalOptions& g, bool create) {
  replay::Options o;
  o.create_if_missing = create;
  return Store::Open(o, StorePath(g));
}

// Readers open read-only so that they work beside a running trainer.
// nullptr: there is no store yet (nothing to show). A store that is there
// but cannot be read is an error, never "empty".
Result<std::unique_ptr<Store>> OpenForRead(const GlobalOptions& g) {
  replay::Options o;
  o.read_only = true;
  auto store = Store::Open(o, StorePath(g));
  if (!store.ok() && store.status().code() == StatusCode::kNotFound) {
    return std::unique_ptr<Store>();
  }
  return store;
}

// Rejections of one event: fix the input. Everything else is the store's.
bool IsInputError(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kFailedPrecondition;
}

nlohmann::json EventJson(const replay::StoredEvent& e) {
  return {{"seq", e.seq}, {"event", nlohmann::json::parse(feedback::EventToJson(e.event))}};
}

int Add(const GlobalOptions& g, const std::vector<std::string>& inline_json) {
  std::string text;
  if (!inline_json.empty() && !inline_json.back().empty()) {
    text = inline_json.back();
  } else {
    Status read = ReadCapped(std::cin, feedback::kMaxEventJsonBytes, "event on stdin", &text);
    if (!read.ok()) return PrintError(read);
  }
  auto event = feedback::ParseEventJson(text);
  if (!event.ok()) return PrintError(event.status().WithContext("event"));
  // Checked before the store is opened, so a refused event creates no store.
  feedback::Event checked = *event;
  if (Status v = feedback::ValidateAndNormalize(checked); !v.ok()) return PrintError(v.WithContext("event"));
  auto store = OpenForWrite(g, /*create=*/true);
  if (!store.ok()) return PrintError(store.status());
  std::string id = event->id;
  auto r = (*store)->Append(std::move(event).value());
  if (!r.ok()) return PrintError(r.status().WithContext("event '" + id + "'"));
  bool dup = r->outcome == replay::AppendOutcome::kDuplicate;
  if (g.json) {
    PrintJson({{"id", id}, {"status", dup ? "duplicate" : "stored"}, {"seq", r->seq}});
  } else {
    std::cout << (dup ? "duplicate " : "stored ") << id << "\n";
  }
  return kExitOk;
}

struct ImportTally {
  uint64_t accepted = 0, rejected = 0, duplicates = 0;
  nlohmann::json errors = nlohmann::json::array();
};

void Reject(ImportTally& t, const std::string& file, size_t line, const Status& s, bool json) {
  ++t.rejected;
  if (json) {
    t.errors.push_back({{"line", line}, {"error", s.message()}});
  } else {
    std::cerr << file << ":" << line << ": " << s.message() << "\n";
  }
}

// The store an import writes to. A missing store is created with the first
// event to store, so an import that stores nothing leaves none behind.
struct ImportSink {
  const GlobalOptions& g;
  std::unique_ptr<Store> store;
};

// Stores one chunk; returns a non-input error that must stop the import.
Status Flush(ImportSink& sink, std::vector<feedback::Event>& events, std::vector<size_t>& lines, ImportTally& t,
             const std::string& file, bool json) {
  if (events.empty()) return Status::Ok();
  if (!sink.store) {
    ASSIGN_OR_RETURN(sink.store, OpenForWrite(sink.g, /*create=*/true));
  }
  auto results = sink.store->AppendMany(std::move(events));
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) {
      ++(results[i]->outcome == replay::AppendOutcome::kDuplicate ? t.duplicates : t.accepted);
    } else if (IsInputError(results[i].status())) {
      Reject(t, file, lines[i], results[i].status(), json);
    } else {
      return results[i].status();
    }
  }
  events.clear();
  lines.clear();
  return Status::Ok();
}

// Summary of an import, also when it stopped early.
void PrintTally(const GlobalOptions& g, const ImportTally& t) {
  if (g.json) {
    PrintJson({{"accepted", t.accepted}, {"rejected", t.rejected}, {"duplicates", t.duplicates}, {"errors", t.errors}});
  } else {
    std::cout << "accepted " << t.accepted << ", rejected " << t.rejected << ", duplicates " << t.duplicates << "\n";
  }
}

// A JSONL source must be a readable file (or stdin), never a directory,
// which std::ifstream would open and read as empty.
Status CheckImportFile(const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return NotFoundError("cannot open '" + file + "': " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return InvalidArgumentError("'" + file + "' is a directory, not a JSONL file");
  return Status::Ok();
}

int Import(const GlobalOptions& g, const std::string& file) {
  std::ifstream in;
  if (file != "-") {
    Status ok = CheckImportFile(file);
    if (!ok.ok()) return PrintError(ok);
    in.open(file, std::ios::binary);
    if (!in) return PrintError(IoError("cannot open '" + file + "': " + std::strerror(errno)));
  }
  std::istream& src = file == "-" ? std::cin : in;
  // An existing store is opened first, so that a damaged one fails at once.
  ImportSink sink{g, nullptr};
  auto existing = OpenForWrite(g, /*create=*/false);
  if (existing.ok()) {
    sink.store = std::move(existing).value();
  } else if (existing.status().code() != StatusCode::kNotFound) {
    return PrintError(existing.status());
  }
  ImportTally t;
  std::vector<feedback::Event> events;
  std::vector<size_t> lines;
  std::string line;
  bool too_long = false;
  for (size_t n = 1; ReadLineCapped(src, feedback::kMaxEventJsonBytes, &line, &too_long); ++n) {
    if (too_long) {
      // The rest of the line cannot be told from the next one: stop here,
      // after storing the lines before it.
      Status s = Flush(sink, events, lines, t, file, g.json);
      PrintTally(g, t);
      if (!s.ok()) return PrintError(s.WithContext(file));
      return PrintError(InvalidArgumentError(file + ":" + std::to_string(n) + ": line longer than " +
                                             std::to_string(feedback::kMaxEventJsonBytes) +
                                             " bytes (the limit of one event); import stopped here"));
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto ev = feedback::ParseEventJson(line);
    if (!ev.ok()) {
      Reject(t, file, n, ev.status(), g.json);
      continue;
    }
    events.push_back(std::move(ev).value());
    lines.push_back(n);
    if (events.size() == kImportChunk) {
      Status s = Flush(sink, events, lines, t, file, g.json);
      if (!s.ok()) {
        PrintTally(g, t);  // what was stored before the failure stays stored
        return PrintError(s.WithContext(file + ":" + std::to_string(n)));
      }
    }
  }
  if (src.bad()) {
    Status s = Flush(sink, events, lines, t, file, g.json);
    PrintTally(g, t);
    return PrintError(IoError("reading '" + file + "' failed" + (s.ok() ? "" : "; " + s.message())));
  }
  Status s = Flush(sink, events, lines, t, file, g.json);
  PrintTally(g, t);
  if (!s.ok()) return PrintError(s.WithContext(file));
  return t.rejected == 0 ? kExitOk : kExitError;
}

int Export(const GlobalOptions& g, const std::string& user) {
  auto store = OpenForRead(g);
  if (!store.ok()) return PrintError(store.status());
  if (!*store) return kExitOk;
  replay::ScanOptions so;
  so.user_id = user;
  Status s = (*store)->Scan(so, [](const replay::StoredEvent& e) {
    std::cout << feedback::EventToJson(e.event) << "\n";
    return true;
  });
  std::cout.flush();
  return s.ok() ? kExitOk : PrintError(s);
}

std::string Preview(const std::string& s, size_t n) {
  std::string out;
  for (char c : s) {
    if (out.size() >= n) return out + "...";
    out.push_back(c == '\n' || c == '\t' ? ' ' : c);
  }
  return out;
}

int List(const GlobalOptions& g, const std::string& user, size_t limit, bool quarantined) {
  auto store = OpenForRead(g);
  if (!store.ok()) return PrintError(store.status());
  nlohmann::json rows = nlohmann::json::array();
  if (*store) {
    std::set<std::string> held;
    if (quarantined) {
      auto q = (*store)->Quarantined();
      if (!q.ok()) return PrintError(q.status());
      held.insert(q->begin(), q->end());
    }
    replay::ScanOptions so;
    so.user_id = user;
    so.limit = quarantined ? 0 : limit;
    so.newest_first = true;
    size_t listed = 0;
    Status s = (*store)->Scan(so, [&](const replay::StoredEvent& e) {
      if (quarantined) {
        if (!held.count(e.event.id)) return true;
        if (limit > 0 && listed >= limit) return false;
      }
      ++listed;
      if (g.json) {
        rows.push_back(EventJson(e));
      } else {
        const auto& ev = e.event;
        std::cout << e.seq << "\t" << feedback::FormatTime(ev.time) << "\t" << ev.id << "\t" << ev.user_id << "\t"
                  << feedback::SignalName(ev.signal) << "\t"
                  << Preview(ev.context.empty() ? "" : ev.context.back().content, 40) << "\n";
      }
      return true;
    });
    if (!s.ok()) return PrintError(s);
  }
  if (g.json) PrintJson({{"events", rows}});
  return kExitOk;
}

int PrintStats(const GlobalOptions& g) {
  auto store = OpenForRead(g);
  if (!store.ok()) return PrintError(store.status());
  replay::Stats st;
  if (*store) {
    auto r = (*store)->GetStats();
    if (!r.ok()) return PrintError(r.status());
    st = *r;
  }
  nlohmann::json j = {{"events", st.events},
                      {"bytes", st.bytes},
                      {"recent", st.recent},
                      {"reservoir", st.reservoir},
                      {"reservoir_capacity", st.reservoir_capacity},
                      {"last_seq", st.last_seq},
                      {"cursor", st.cursor},
                      {"new_since_cursor", st.new_since_cursor},
                      {"adapter_versions", st.adapter_versions},
                      {"appended", st.appended},
                      {"duplicates", st.duplicates},
                      {"evicted", {{"count", st.evicted_count}, {"bytes", st.evicted_bytes}, {"age", st.evicted_age}}},
                      {"forgotten", st.forgotten}};
  if (g.json) {
    PrintJson(j);
    return kExitOk;
  }
  std::cout << "events            " << st.events << " (" << st.recent << " recent, " << st.reservoir
            << " in reservoir of " << st.reservoir_capacity << ")\n"
            << "bytes             " << st.bytes << "\n"
            << "new since cursor  " << st.new_since_cursor << " (cursor " << st.cursor << ", last seq " << st.last_seq
            << ")\n"
            << "adapter versions  " << st.adapter_versions << "\n"
            << "appended          " << st.appended << " (+" << st.duplicates << " duplicates)\n"
            << "evicted           " << st.evicted_count << " by max_events, " << st.evicted_bytes << " by max_bytes, "
            << st.evicted_age << " by max_age\n"
            << "forgotten         " << st.forgotten << "\n";
  return kExitOk;
}

int Forget(const GlobalOptions& g, const std::string& user, const std::string& event) {
  auto store = OpenForWrite(g, /*create=*/false);
  if (!store.ok() && store.status().code() == StatusCode::kNotFound && !user.empty()) {
    // No store: nothing of this user is kept. Do not create one to say so.
    if (g.json) {
      PrintJson({{"events_erased", 0}, {"affected_adapter_versions", nlohmann::json::array()}});
    } else {
      std::cout << "erased 0 events\n";
    }
    return kExitOk;
  }
  if (!store.ok()) return PrintError(store.status());
  uint64_t events_erased = 0;
  std::vector<std::string> affected, retired;
  std::string active_after;
  bool rolled_back = false, retrain = false;
  bool store_only = true;
#ifdef ATTUNE_HAVE_RUNTIME_CLI
  // End to end: the adapters built from the erased events go too (when there
  // is a registry: none is created to say so).
  const std::string reg_dir = ResolveDataDir(g.data_dir) + "/adapters";
  if (PathExists(reg_dir)) {
    store_only = false;
    auto reg = adapters::Registry::Open(adapters::RegistryOptions{}, reg_dir);
    if (!reg.ok()) return PrintError(reg.status().WithContext("adapter registry"));
    auto r = trainer::ForgetAndRetire(**store, **reg, ResolveDataDir(g.data_dir) + "/checkpoints/train.ck",
                                      user.empty() ? trainer::ForgetScope::kEvent : trainer::ForgetScope::kUser,
                                      user.empty() ? event : user);
    if (!r.ok()) return PrintError(r.status());
    events_erased = r->events_erased;
    affected = r->affected_versions;
    retired = r->retired.erased;
    rolled_back = r->retired.rolled_back;
    active_after = r->retired.active_after;
    retrain = r->retrain_scheduled;
  }
#endif
  if (store_only) {
    auto r = user.empty() ? (*store)->ForgetEvent(event) : (*store)->ForgetUser(user);
    if (!r.ok()) return PrintError(r.status());
    events_erased = r->events_erased;
    affected = r->affected_adapter_versions;
  }
  // Erasure follows the data: the next `attune sync` tells the other devices.
  Status tomb = RecordErasureForSync(g, affected, user.empty() ? "forget --event " + event : "forget --user " + user);
  if (!tomb.ok()) return PrintError(tomb.WithContext("events erased, but the tombstone for synced devices failed"));
  if (g.json) {
    PrintJson({{"events_erased", events_erased},
               {"affected_adapter_versions", affected},
               {"retired_versions", retired},
               {"rolled_back", rolled_back},
               {"active_version", active_after},
               {"retrain_scheduled", retrain}});
    return kExitOk;
  }
  std::cout << "erased " << events_erased << " events\n";
  if (!affected.empty()) {
    std::cout << "adapter versions trained on erased data:";
    for (const auto& v : affected) std::cout << " " << v;
    std::cout << "\n";
  }
  if (!retired.empty()) {
    std::cout << "retired " << retired.size() << " adapter version(s) built from it";
    if (rolled_back) std::cout << "; the active one was rolled back to " << (active_after.empty() ? "the base model" : active_after);
    std::cout << "\n";
  }
  if (retrain) std::cout << "the next training window relearns the remaining feedback\n";
  return kExitOk;
}

int Repair(const GlobalOptions& g) {
  replay::Options o;
  auto r = replay::RepairStore(o, StorePath(g));
  if (!r.ok()) return PrintError(r.status());
  const replay::RepairReport& rep = *r;
  const bool lost_known = rep.events_known && rep.events_before >= rep.events_recovered;
  const uint64_t lost = lost_known ? rep.events_before - rep.events_recovered : 0;
  if (g.json) {
    nlohmann::json j = {{"needed", rep.needed},
                        {"damage", rep.damage},
                        {"backup", rep.backup_dir},
                        {"events_recovered", rep.events_recovered},
                        {"events_before", rep.events_known ? nlohmann::json(rep.events_before) : nlohmann::json()},
                        {"events_lost", lost_known ? nlohmann::json(lost) : nlohmann::json()},
                        {"lost_event_ids", rep.lost_event_ids},
                        {"set_aside_files", rep.set_aside_files},
                        {"last_seq", rep.last_seq}};
    PrintJson(j);
    return kExitOk;
  }
  if (!rep.needed) {
    std::cout << "the replay store opens and verifies: nothing to repair\n";
    return kExitOk;
  }
  std::cout << "damage:     " << rep.damage << "\n"
            << "backup:     " << rep.backup_dir << " (the store as it was)\n"
            << "recovered:  " << rep.events_recovered << " events (last seq " << rep.last_seq << ")\n";
  if (rep.events_known) {
    std::cout << "lost:       " << lost << " of the " << rep.events_before << " events the store counted\n";
  } else {
    std::cout << "lost:       unknown: whatever was written after the damage (nothing else records how much)\n";
  }
  for (const auto& id : rep.lost_event_ids) std::cout << "lost event  " << id << "\n";
  for (const auto& f : rep.set_aside_files) std::cout << "set aside   " << f << " (unreadable)\n";
  return kExitOk;
}

}  // namespace

void AddFeedbackCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  CLI::App* fb = app.add_subcommand("feedback", "Record, inspect and erase user feedback");
  fb->require_subcommand(1);

  // `add` takes the event as the value of --json (DESIGN.md); --json without
  // a value reads the event from stdin. Either way the output is JSON.
  auto* add = fb->add_subcommand("add", "Store one event (JSON from --json or stdin)");
  auto inline_json = std::make_shared<std::vector<std::string>>();
  AddDataDirFlag(add, g);
  auto* json_opt = add->add_option("--json", *inline_json,
                                   "The event as JSON; without a value, read it from stdin. "
                                   "Output is JSON either way")
                       ->expected(0, 1);
  add->callback(Run(r, [&g, inline_json, json_opt] {
    g.json = json_opt->count() > 0;
    return Add(g, *inline_json);
  }));

  auto file = std::make_shared<std::string>();
  auto* imp = fb->add_subcommand("import", "Store the events of a JSONL file, one per line");
  imp->add_option("FILE", *file, "JSONL file, or - for stdin")->required();
  AddCommonFlags(imp, g);
  imp->callback(Run(r, [&g, file] { return Import(g, *file); }));

  auto user = std::make_shared<std::string>();
  auto* exp = fb->add_subcommand("export", "Write stored events as JSONL to stdout");
  exp->add_option("--user", *user, "Only this user's events")->check(NonEmptyValue());
  AddCommonFlags(exp, g);
  exp->callback(Run(r, [&g, user] { return Export(g, *user); }));

  auto limit = std::make_shared<std::string>("20");
  auto* ls = fb->add_subcommand("ls", "List stored events, newest first");
  ls->add_option("--user", *user, "Only this user's events")->check(NonEmptyValue());
  ls->add_option("--limit", *limit, "Most events to list; 0 = all (default: 20)")->check(CountValue(kMaxListLimit));
  static bool quarantined = false;
  ls->add_flag("--quarantined", quarantined,
               "Only events held back from training: a window the gate rejected used them (released when that "
               "candidate is promoted with --force)");
  AddCommonFlags(ls, g);
  ls->callback(Run(r, [&g, user, limit] { return List(g, *user, ParseCount(*limit), quarantined); }));

  auto* stats = fb->add_subcommand("stats", "Counts, bytes, cursor and evictions");
  AddCommonFlags(stats, g);
  stats->callback(Run(r, [&g] { return PrintStats(g); }));

  auto event = std::make_shared<std::string>();
  auto* forget = fb->add_subcommand("forget", "Erase a user's events or one event");
  auto* target = forget->add_option_group("target", "What to erase (exactly one)");
  target->add_option("--user", *user, "Erase every event of this user")->check(NonEmptyValue());
  target->add_option("--event", *event, "Erase the event with this id")->check(NonEmptyValue());
  target->require_option(1);
  AddCommonFlags(forget, g);
  forget->callback(Run(r, [&g, user, event] { return Forget(g, *user, *event); }));

  auto* repair = fb->add_subcommand(
      "repair",
      "Recover a damaged store: back it up, rebuild it from what is readable, report what was lost. Never runs by "
      "itself");
  AddCommonFlags(repair, g);
  repair->callback(Run(r, [&g] { return Repair(g); }));
}

}  // namespace attune::cli
