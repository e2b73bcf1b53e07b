// GET /v1/adapters, POST /v1/adapters/{version}/promote, POST /v1/adapters/rollback.
#include "service/src/server_impl.h"

namespace attune::service {

using nlohmann::json;

namespace {

void HandleList(Server::Impl* impl, httplib::Response& res) {
  const adapters::Registry& reg = impl->assistant->registry();
  const std::string active = reg.Active();
  json versions = json::array();
  for (const auto& v : reg.List()) {
    versions.push_back({{"version", v.id},
                        {"label", v.label()},
                        {"model", "attune:" + v.label()},
                        {"state", std::string(adapters::VersionStateName(v.state))},
                        {"active", v.id == active},
                        {"parent", v.parent_version},
                        {"pinned", v.pinned},
                        {"reason", v.reason},
                        {"created_unix_ms", v.created_unix_ms},
                        {"metrics", v.metrics}});
  }
  SendJson(res, 200, {{"active", active}, {"active_label", active.empty() ? "base" : reg.Label(active)},
                      {"versions", versions}});
}

void HandlePromote(Server::Impl* impl, const httplib::Request& req, httplib::Response& res) {
  json body;
  if (!ParseBody(req, res, &body, /*allow_empty=*/true)) return;
  for (const auto& [k, v] : body.items()) {
    if (k != "force") return SendError(res, BadField(k, "is not a field of a promote request (only \"force\")"));
    if (!v.is_boolean()) return SendError(res, BadField("force", "must be true or false"));
  }
  const bool force = body.value("force", false);
  auto id = impl->assistant->Promote(req.matches[1], force);
  if (!id.ok()) return SendError(res, ErrorFromStatus(id.status(), "version"));
  impl->metrics.CountPromotion();
  SendJson(res, 200, {{"active", *id}, {"active_label", impl->assistant->registry().Label(*id)}});
}

void HandleRollback(Server::Impl* impl, httplib::Response& res) {
  auto id = impl->assistant->Rollback();
  if (!id.ok()) return SendError(res, ErrorFromStatus(id.status()));
  impl->metrics.CountRollback();
  SendJson(res, 200,
           {{"active", *id}, {"active_label", id->empty() ? "base" : impl->assistant->registry().Label(*id)}});
}

}  // namespace

void Server::Impl::AdapterRoutes() {
  http.Get("/v1/adapters", [this](const httplib::Request&, httplib::Response& res) { HandleList(this, res); });
  http.Post("/v1/adapters/rollback",
            [this](const httplib::Request&, httplib::Response& res) { HandleRollback(this, res); });
  http.Post(R"(/v1/adapters/([A-Za-z0-9]{1,80})/promote)",
            [this](const httplib::Request& req, httplib::Response& res) { HandlePromote(this, req, res); });
}

}  // namespace attune::service
