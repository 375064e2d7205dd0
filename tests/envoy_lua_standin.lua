-- A stand-in for Envoy's Lua stream handle (docs: configuration/http/http_filters/lua_filter),
-- enough to run modelplat's filters in a real LuaJIT. Faithful where the filters depend on it:
--  * scripts run as coroutines; body() and bodyChunks() suspend until Envoy has the data
--    (here: the driver resumes the coroutine with the next chunk);
--  * body() buffers the whole body and returns nil for a stream without one, unless
--    always_wrap_body; bodyChunks() hands out chunks unbuffered, and after it headers can no
--    longer be changed (they went on to the next filter);
--  * headers are case-insensitive, get() joins repeated values with ",";
--  * respond() only in the request flow and only before the headers went on;
--  * buffer:getBytes(index, length) refuses index + length > length();
--  * metadata() is the route's filter_metadata under the filter's config name, with the
--    canonical "envoy.filters.http.lua" as fallback; dynamicMetadata() is per stream, shared by
--    the request and response flows, get() returns a copy.
local M = {}

local function header_map(list, state)
  local entries = {}
  for _, kv in ipairs(list or {}) do entries[#entries + 1] = { kv[1]:lower(), kv[2] } end
  local map = {}
  local function check_writable()
    if state.headers_sent then error("headers have already been sent to the next filter", 2) end
  end
  function map:get(key)
    key = key:lower()
    local values = {}
    for _, e in ipairs(entries) do
      if e[1] == key then values[#values + 1] = e[2] end
    end
    if #values == 0 then return nil end
    return table.concat(values, ",")
  end
  function map:getNumValues(key)
    local n = 0
    for _, e in ipairs(entries) do if e[1] == key:lower() then n = n + 1 end end
    return n
  end
  function map:add(key, value)
    check_writable()
    if type(value) ~= "string" then error("header value must be a string", 2) end
    entries[#entries + 1] = { key:lower(), value }
  end
  function map:remove(key)
    check_writable()
    key = key:lower()
    local kept = {}
    for _, e in ipairs(entries) do if e[1] ~= key then kept[#kept + 1] = e end end
    entries = kept
  end
  function map:replace(key, value)
    check_writable()
    if type(value) ~= "string" then error("header value must be a string", 2) end
    local found = false
    local kept = {}
    for _, e in ipairs(entries) do
      if e[1] == key:lower() then
        if not found then kept[#kept + 1] = { e[1], value }; found = true end
      else
        kept[#kept + 1] = e
      end
    end
    if not found then kept[#kept + 1] = { key:lower(), value } end
    entries = kept
  end
  function map:entries()
    local copy = {}
    for i, e in ipairs(entries) do copy[i] = { e[1], e[2] } end
    return copy
  end
  return map
end

local function buffer(bytes)
  local b = { data = bytes }
  function b:length() return #self.data end
  function b:getBytes(index, length)
    if index < 0 or length < 0 or index + length > #self.data then
      error("index/length must be >= 0 and (index + length) must be <= buffer size", 2)
    end
    return self.data:sub(index + 1, index + length)
  end
  function b:setBytes(text)
    self.data = text
  end
  return b
end

local function copy(value)
  if type(value) ~= "table" then return value end
  local out = {}
  for k, v in pairs(value) do out[k] = copy(v) end
  return out
end

-- A stream: state shared by the request and response handles.
function M.stream(spec)
  local s = {
    dynamic = {},
    logs = {},
    route_metadata = spec.route_metadata or {},
    filter_name = spec.filter_name or "envoy.filters.http.lua",
    remote = spec.remote_address or "10.0.0.7:51234",
  }

  local stream_info = {}
  function stream_info:dynamicMetadata()
    local dm = {}
    function dm:get(ns) return copy(s.dynamic[ns]) end
    function dm:set(ns, key, value)
      if type(key) ~= "string" then error("key must be a string", 2) end
      local t = type(value)
      if t ~= "table" and t ~= "number" and t ~= "boolean" and t ~= "string" then
        error("unsupported metadata value type: " .. t, 2)
      end
      s.dynamic[ns] = s.dynamic[ns] or {}
      s.dynamic[ns][key] = copy(value)
    end
    return dm
  end
  function stream_info:downstreamRemoteAddress() return s.remote end
  function stream_info:downstreamDirectRemoteAddress() return s.remote end
  function stream_info:protocol() return "HTTP/1.1" end

  local function handle_for(flow, headers_list, has_body)
    local state = { headers_sent = false, flow = flow }
    local h = { state = state }
    local headers = header_map(headers_list, state)
    state.headers = headers
    function h:headers() return headers end
    function h:streamInfo() return stream_info end
    function h:metadata()
      local md = s.route_metadata[s.filter_name] or s.route_metadata["envoy.filters.http.lua"] or {}
      local wrapper = {}
      function wrapper:get(key) return copy(md[key]) end
      return wrapper
    end
    function h:body(always_wrap)
      if state.chunks_started then error("body() after bodyChunks()", 2) end
      local parts = {}
      if has_body then
        while true do
          local chunk = coroutine.yield("chunk")
          if chunk == nil then break end
          parts[#parts + 1] = chunk
        end
      end
      if #parts == 0 and not always_wrap then
        if not has_body then return nil end
      end
      state.body = buffer(table.concat(parts))
      return state.body
    end
    function h:bodyChunks()
      state.chunks_started = true
      state.headers_sent = true
      state.streamed = {}
      local done = not has_body
      return function()
        if done then return nil end
        local chunk = coroutine.yield("chunk")
        if chunk == nil then done = true; return nil end
        local b = buffer(chunk)
        state.streamed[#state.streamed + 1] = b
        return b
      end
    end
    function h:respond(resp_headers, body)
      if flow ~= "request" then error("respond() is only valid in the request flow", 2) end
      if state.headers_sent then error("cannot respond after headers went to the next filter", 2) end
      if resp_headers[":status"] == nil then error(":status must be set", 2) end
      state.responded = { headers = copy(resp_headers), body = body }
      coroutine.yield("responded")
      error("respond() returned: the script must not continue", 2)
    end
    for _, level in ipairs({ "Trace", "Debug", "Info", "Warn", "Err", "Critical" }) do
      h["log" .. level] = function(_, message)
        if type(message) ~= "string" then error("log message must be a string", 2) end
        s.logs[#s.logs + 1] = { level = level, message = message }
      end
    end
    return h
  end

  -- Runs one flow of the script: fn is envoy_on_request or envoy_on_response; chunks a list of
  -- strings fed one by one when the script asks (nil or {} for a stream without a body).
  function s.run(fn, flow, headers_list, chunks)
    chunks = chunks or {}
    local has_body = #chunks > 0
    local h = handle_for(flow, headers_list, has_body)
    local co = coroutine.create(function() fn(h) end)
    local next_chunk = 1
    local ok, what = coroutine.resume(co)
    while true do
      if not ok then error(what, 0) end
      if coroutine.status(co) == "dead" or what == "responded" then break end
      -- the script waits for body data
      local chunk = chunks[next_chunk]
      next_chunk = next_chunk + 1
      ok, what = coroutine.resume(co, chunk)
    end
    h.state.headers_sent = true
    local body
    if h.state.body then
      body = h.state.body.data
    elseif h.state.streamed then
      local parts = {}
      for i, b in ipairs(h.state.streamed) do parts[i] = b.data end
      -- chunks the script never pulled still pass through
      for i = next_chunk, #chunks do parts[#parts + 1] = chunks[i] end
      body = table.concat(parts)
    else
      body = table.concat(chunks)
    end
    return { headers = h.state.headers:entries(), body = body, responded = h.state.responded }
  end

  return s
end

return M
