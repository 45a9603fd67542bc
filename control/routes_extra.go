package control

import "slices"

// extraRoutes is where features beyond the reference add routes to the table
// (webhook deliveries, test calls, ...).
func (s *Server) extraRoutes() []*route {
	wh := func(method, path, summary string, status int, resp string, query []param, errs []int, h func(*call) (result, error)) *route {
		rl := roleOwner
		if method == "GET" {
			rl = roleViewer
		}
		return &route{method: method, path: path, auth: authCompany, role: rl, tag: "Webhooks", summary: summary, resource: "webhook",
			resp: resp, query: query, status: status, errors: errs, h: h}
	}
	return append([]*route{
		wh("GET", "/api/webhooks/{webhook_id}/deliveries", "List a webhook's deliveries, newest first", 200,
			"WebhookDeliveryPage", pageParams(), []int{404, 422}, s.listWebhookDeliveries),
		wh("GET", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}", "Get one delivery", 200,
			"WebhookDelivery", nil, []int{404, 422}, s.getWebhookDelivery),
		wh("POST", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
			"Attempt a delivery again now (also a failed or succeeded one)", 202, "WebhookDelivery", nil, []int{404, 409, 422}, s.redeliverWebhookDelivery),
		wh("POST", "/api/webhooks/{webhook_id}/test", "Send a webhook.test event to this webhook only", 202,
			"WebhookDelivery", nil, []int{404, 409, 422}, s.testWebhook),
	}, slices.Concat(s.testCallRoutes(), s.outboundRoutes(), s.batchRoutes(), s.trunkRoutes(), s.liveRoutes(), s.agencyUserRoutes())...)
}
