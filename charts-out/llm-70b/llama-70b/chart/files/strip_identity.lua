-- modelplat identity hygiene: drop client-sent copies of the identity headers before the JWT
-- filter runs. Istio's RequestAuthentication copies claims of a verified token into these
-- headers (outputClaimToHeaders); a caller that sends no token must not be able to set them.
-- The header names come from route metadata (filter_metadata["modelplat.identity.lua"]).
function envoy_on_request(handle)
  local md = handle:metadata()
  local names = md and md:get("headers")
  if type(names) ~= "table" then return end
  local headers = handle:headers()
  for _, name in ipairs(names) do
    headers:remove(name)
  end
end
