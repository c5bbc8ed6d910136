-- wrk: POST /v2/token/logout with a different bearer token per request,
-- as revokerd sends them (empty body, keep-alive).
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n = 0

function request()
  n = n + 1
  return wrk.format("POST", "/v2/token/logout",
    {["Authorization"] = "Bearer wrk-" .. tid .. "-" .. n, ["Content-Length"] = "0",
     ["Accept"] = "application/json"}, "")
end
