// attune feedback add | import | export | ls | stats | forget
// See docs/feedback.md for examples.
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>

#include "attune/core/file.h"
#include "attune/feedback/codec.h"
#include "attune/replay/store.h"
#include "cli/cli_common.h"

namespace attune::cli {
namespace {

using replay::Store;

constexpr size_t kImportChunk = 256;  // events per commit (one fsync)

std::string StorePath(const GlobalOptions& g) { return ResolveDataDir(g.data_dir) + "/replay"; }

Result<std::unique_ptr<Store>> OpenForWrite(const GlobalOptions& g) {
  replay::Options o;
  return Store::Open(o, StorePath(g));
}

// Readers open read-only so that they work beside a running trainer.
// nullptr: there is no store yet (nothing to show).
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
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  auto event = feedback::ParseEventJson(text);
  if (!event.ok()) return PrintError(event.status().WithContext("event"));
  auto store = OpenForWrite(g);
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

// Stores one chunk; returns a non-input error that must stop the import.
Status Flush(Store& store, std::vector<feedback::Event>& events, std::vector<size_t>& lines, ImportTally& t,
             const std::string& file, bool json) {
  auto results = store.AppendMany(std::move(events));
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

int Import(const GlobalOptions& g, const std::string& file) {
  std::ifstream in;
  if (file != "-") {
    in.open(file);
    if (!in) return PrintError(NotFoundError("cannot open '" + file + "'"));
  }
  std::istream& src = file == "-" ? std::cin : in;
  auto store = OpenForWrite(g);
  if (!store.ok()) return PrintError(store.status());
  ImportTally t;
  std::vector<feedback::Event> events;
  std::vector<size_t> lines;
  std::string line;
  for (size_t n = 1; std::getline(src, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto ev = feedback::ParseEventJson(line);
    if (!ev.ok()) {
      Reject(t, file, n, ev.status(), g.json);
      continue;
    }
    events.push_back(std::move(ev).value());
    lines.push_back(n);
    if (events.size() == kImportChunk) {
      Status s = Flush(**store, events, lines, t, file, g.json);
      if (!s.ok()) return PrintError(s.WithContext(file + ":" + std::to_string(n)));
    }
  }
  Status s = Flush(**store, events, lines, t, file, g.json);
  if (!s.ok()) return PrintError(s.WithContext(file));
  if (g.json) {
    PrintJson({{"accepted", t.accepted}, {"rejected", t.rejected}, {"duplicates", t.duplicates}, {"errors", t.errors}});
  } else {
    std::cout << "accepted " << t.accepted << ", rejected " << t.rejected << ", duplicates " << t.duplicates << "\n";
  }
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

int List(const GlobalOptions& g, const std::string& user, size_t limit) {
  auto store = OpenForRead(g);
  if (!store.ok()) return PrintError(store.status());
  nlohmann::json rows = nlohmann::json::array();
  if (*store) {
    replay::ScanOptions so;
    so.user_id = user;
    so.limit = limit;
    so.newest_first = true;
    Status s = (*store)->Scan(so, [&](const replay::StoredEvent& e) {
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
  auto store = OpenForWrite(g);
  if (!store.ok()) return PrintError(store.status());
  auto r = user.empty() ? (*store)->ForgetEvent(event) : (*store)->ForgetUser(user);
  if (!r.ok()) return PrintError(r.status());
  // Erasure follows the data: the next `attune sync` tells the other devices.
  Status tomb = RecordErasureForSync(g, r->affected_adapter_versions,
                                     user.empty() ? "forget --event " + event : "forget --user " + user);
  if (!tomb.ok()) return PrintError(tomb.WithContext("events erased, but the tombstone for synced devices failed"));
  if (g.json) {
    PrintJson({{"events_erased", r->events_erased}, {"affected_adapter_versions", r->affected_adapter_versions}});
    return kExitOk;
  }
  std::cout << "erased " << r->events_erased << " events\n";
  if (!r->affected_adapter_versions.empty()) {
    std::cout << "adapter versions trained on erased data:";
    for (const auto& v : r->affected_adapter_versions) std::cout << " " << v;
    std::cout << "\n";
  }
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
  add->add_option("--data-dir", g.data_dir, "Data directory (default: $ATTUNE_HOME or ~/.local/share/attune)");
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
  exp->add_option("--user", *user, "Only this user's events");
  AddCommonFlags(exp, g);
  exp->callback(Run(r, [&g, user] { return Export(g, *user); }));

  auto limit = std::make_shared<size_t>(20);
  auto* ls = fb->add_subcommand("ls", "List stored events, newest first");
  ls->add_option("--user", *user, "Only this user's events");
  ls->add_option("--limit", *limit, "Most events to list; 0 = all (default: 20)");
  AddCommonFlags(ls, g);
  ls->callback(Run(r, [&g, user, limit] { return List(g, *user, *limit); }));

  auto* stats = fb->add_subcommand("stats", "Counts, bytes, cursor and evictions");
  AddCommonFlags(stats, g);
  stats->callback(Run(r, [&g] { return PrintStats(g); }));

  auto event = std::make_shared<std::string>();
  auto* forget = fb->add_subcommand("forget", "Erase a user's events or one event");
  auto* target = forget->add_option_group("target", "What to erase (exactly one)");
  target->add_option("--user", *user, "Erase every event of this user");
  target->add_option("--event", *event, "Erase the event with this id");
  target->require_option(1);
  AddCommonFlags(forget, g);
  forget->callback(Run(r, [&g, user, event] { return Forget(g, *user, *event); }));
}

}  // namespace attune::cli
