-- modelplat token quotas: the Lua half (Envoy's LuaJIT, one copy per worker thread).
--
-- Request:  on a counted OpenAI-style path, publish who is calling as dynamic metadata
--           (namespace "modelplat.tokens": sa, ip). The token rate-limit filters after this one
--           turn it into descriptors with cost 0: a caller already over quota gets 429 there.
--           A streaming request without stream_options.include_usage gets it added, so every
--           stream reports its usage.
-- Response: read the usage the model reports (a JSON body, or the last usage of an SSE stream)
--           and publish it as "used"; the rate-limit filters add it to the shared counters when
--           the stream is done. A 429 from those filters gets an OpenAI-style JSON error body.
--
-- Settings come from route metadata (filter_metadata["modelplat.tokens.lua"]): data, never code.
-- Envoy's Lua has no JSON library, so this file carries its own small decoder.

local NS = "modelplat.tokens"
local MAX_BODY = 64 * 1024 * 1024  -- larger responses are passed through uncounted (logged)
local MAX_LINE = 4 * 1024 * 1024   -- one SSE line longer than this is dropped (logged)

local byte, sub, find, char = string.byte, string.sub, string.find, string.char
local concat = table.concat

-- JSON -------------------------------------------------------------------------------------------

local json = {}
json.null = setmetatable({}, { __tostring = function() return "null" end })

local function fail(pos, what)
  error({ json = true, msg = what .. " at byte " .. pos }, 0)
end

local function skip_ws(s, i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function utf8_of(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local ESCAPES = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n",
  [114] = "\r", [116] = "\t" }

-- A string starting at s[i] == '"'; returns the decoded text (nil when not wanted) and the index
-- after the closing quote.
local function parse_string(s, i, want)
  local parts, n = want and {} or nil, 0
  local pos = i + 1
  while true do
    local q = find(s, '["\\%z\1-\31]', pos) -- not %c: DEL (127) is allowed raw in JSON
    if not q then fail(i, "unterminated string") end
    local c = byte(s, q)
    if c < 32 then fail(q, "control character in string") end
    if want and q > pos then n = n + 1; parts[n] = sub(s, pos, q - 1) end
    if c == 34 then
      return want and concat(parts) or nil, q + 1
    end
    local e = byte(s, q + 1)
    if e == 117 then
      local hex = sub(s, q + 2, q + 5)
      if not find(hex, "^%x%x%x%x$") then fail(q, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      local nxt = q + 6
      if cp >= 0xD800 and cp <= 0xDBFF and sub(s, nxt, nxt + 1) == "\\u" then
        local lo_hex = sub(s, nxt + 2, nxt + 5)
        local lo = find(lo_hex, "^%x%x%x%x$") and tonumber(lo_hex, 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          nxt = nxt + 6
        end
      end
      if want then n = n + 1; parts[n] = utf8_of(cp) end
      pos = nxt
    else
      local text = e and ESCAPES[e]
      if not text then fail(q, "bad escape") end
      if want then n = n + 1; parts[n] = text end
      pos = q + 2
    end
  end
end

local parse_value

local function always() return true end
local function never() return false end

-- Walks the object at s[i] ("{"): each member's value is built when wanted(key) says so, and
-- visit(key, value, vstart, vend) is called with it (vstart..vend: the value's bytes). Keys are
-- decoded only when keys is true. Returns the index after the closing "}".
local function walk_object(s, i, depth, keys, wanted, visit)
  i = skip_ws(s, i + 1)
  if byte(s, i) == 125 then return i + 1 end
  while true do
    if byte(s, i) ~= 34 then fail(i, "expected a key") end
    local key
    key, i = parse_string(s, i, keys)
    i = skip_ws(s, i)
    if byte(s, i) ~= 58 then fail(i, "expected ':'") end
    local vstart = skip_ws(s, i + 1)
    local value
    value, i = parse_value(s, vstart, wanted(key), depth + 1)
    if visit then visit(key, value, vstart, i - 1) end
    i = skip_ws(s, i)
    local c = byte(s, i)
    if c == 125 then return i + 1 end
    if c ~= 44 then fail(i, "expected ',' or '}'") end
    i = skip_ws(s, i + 1)
  end
end

local function parse_number(s, i)
  local _, e = find(s, "^-?%d+", i)
  if not e then fail(i, "unexpected character") end
  if byte(s, i) == 48 or (byte(s, i) == 45 and byte(s, i + 1) == 48) then
    -- no leading zeros: "0" and "-0" only stand alone before a fraction or exponent
    local digits = sub(s, i, e)
    if digits ~= "0" and digits ~= "-0" then fail(i, "leading zero") end
  end
  local _, f = find(s, "^%.%d+", e + 1)
  if f then e = f elseif byte(s, e + 1) == 46 then fail(e + 1, "bad fraction") end
  local _, x = find(s, "^[eE][-+]?%d+", e + 1)
  if x then e = x elseif byte(s, e + 1) == 69 or byte(s, e + 1) == 101 then fail(e + 1, "bad exponent") end
  return tonumber(sub(s, i, e)), e + 1
end

-- Returns value (nil when not wanted), next index. `want` false validates without building.
parse_value = function(s, i, want, depth)
  if depth > 512 then fail(i, "nesting too deep") end
  i = skip_ws(s, i)
  local c = byte(s, i)
  if c == 123 then -- {
    if not want then return nil, walk_object(s, i, depth, false, never, nil) end
    local obj = {}
    return obj, walk_object(s, i, depth, true, always, function(key, value) obj[key] = value end)
  elseif c == 91 then -- [
    local arr, n = want and {} or nil, 0
    i = skip_ws(s, i + 1)
    if byte(s, i) == 93 then return arr, i + 1 end
    while true do
      local value
      value, i = parse_value(s, i, want, depth + 1)
      n = n + 1
      if want then arr[n] = value end
      i = skip_ws(s, i)
      c = byte(s, i)
      if c == 93 then return arr, i + 1 end
      if c ~= 44 then fail(i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == 34 then
    return parse_string(s, i, want)
  elseif c == 116 and sub(s, i, i + 3) == "true" then
    return true, i + 4
  elseif c == 102 and sub(s, i, i + 4) == "false" then
    return false, i + 5
  elseif c == 110 and sub(s, i, i + 3) == "null" then
    return json.null, i + 4
  elseif c == nil then
    fail(i, "unexpected end")
  end
  return parse_number(s, i)
end

local function finish(s, i)
  i = skip_ws(s, i)
  if i <= #s then fail(i, "trailing characters") end
end

-- Runs fn: a JSON syntax error becomes nil, message; any other error is raised again.
local function parsing(fn)
  local ok, result = pcall(fn)
  if ok then return result end
  if type(result) == "table" and result.json then return nil, result.msg end
  error(result, 0)
end

-- decode(text) -> value | nil, error
function json.decode(s)
  return parsing(function()
    local v, i = parse_value(s, 1, true, 0)
    finish(s, i)
    return v
  end)
end

-- The members of the top-level object: {key, value (only for keys in `keep`), vstart, vend}.
-- Values of other keys are validated but never built, so a 20 MB body costs no tables.
local function members(s, i, keep)
  i = skip_ws(s, i)
  if byte(s, i) ~= 123 then fail(i, "not an object") end
  local out, n = {}, 0
  local after = walk_object(s, i, 0, true, function(key) return keep[key] or false end,
    function(key, value, vstart, vend)
      n = n + 1
      out[n] = { key = key, value = value, vstart = vstart, vend = vend }
    end)
  return out, after
end

local function last_member(list, key)
  local found
  for _, m in ipairs(list) do
    if m.key == key then found = m end
  end
  return found
end

local function quote(text)
  return '"' .. (text:gsub('[%z\1-\31"\\]', function(c)
    return string.format("\\u%04x", byte(c))
  end)) .. '"'
end

-- Usage -----------------------------------------------------------------------------------------

-- Tokens of an OpenAI-style usage object: total_tokens, else prompt + completion.
local function tokens_of(usage)
  if type(usage) ~= "table" then return nil end
  local function count(v)
    if type(v) == "number" and v >= 0 and v < 1e15 then return math.floor(v) end
    return nil
  end
  local total = count(usage.total_tokens)
  if total then return total end
  local prompt, completion = count(usage.prompt_tokens), count(usage.completion_tokens)
  if prompt or completion then return (prompt or 0) + (completion or 0) end
  return nil
end

-- usage_tokens(json_text) -> tokens | nil, error
local function usage_tokens(s)
  local list, err = parsing(function()
    local found, i = members(s, 1, { usage = true })
    finish(s, i)
    return found
  end)
  if not list then return nil, err end
  local m = last_member(list, "usage")
  return m and tokens_of(m.value) or nil
end

-- An incremental Server-Sent Events reader: feed() any bytes, finish() at the end. Lines end in
-- LF, CRLF or CR, split anywhere between chunks; an event's data lines are joined with LF.
local function sse_reader(on_data)
  local self = { buf = "", data = nil, dropping = false }

  local function line(text)
    if text == "" then
      if self.data then on_data(concat(self.data, "\n")) end
      self.data = nil
      return
    end
    if byte(text, 1) == 58 then return end -- ":" comment
    local field, value = text:match("^([^:]*):? ?(.*)$")
    if field == "data" then
      self.data = self.data or {}
      self.data[#self.data + 1] = value
    end
  end

  function self.feed(bytes)
    local buf = self.buf .. bytes
    local pos = 1
    while true do
      local e = find(buf, "[\r\n]", pos)
      if not e then break end
      if byte(buf, e) == 13 and e == #buf then break end -- a CR whose LF may be in the next chunk
      if self.dropping then
        self.dropping = false
      else
        line(sub(buf, pos, e - 1))
      end
      if byte(buf, e) == 13 and byte(buf, e + 1) == 10 then e = e + 1 end
      pos = e + 1
    end
    self.buf = sub(buf, pos)
    if #self.buf > MAX_LINE then
      self.buf, self.dropping = "", true
      return false
    end
    return true
  end

  function self.finish()
    if self.buf ~= "" and not self.dropping then
      local text = self.buf
      if byte(text, #text) == 13 then text = sub(text, 1, -2) end
      line(text)
    end
    self.buf = ""
    line("")
  end

  return self
end

-- The streaming request body with stream_options.include_usage forced on, or nil when the body
-- needs no change (not streaming, already asked for, or not a JSON object). Everything else is
-- kept byte for byte.
local function with_include_usage(s)
  return (parsing(function()
    local top, i = members(s, 1, { stream = true })
    finish(s, i)
    local stream = last_member(top, "stream")
    if not stream or stream.value ~= true then return nil end
    local opts = last_member(top, "stream_options")
    if not opts then
      local open = skip_ws(s, 1)
      return sub(s, 1, open) .. '"stream_options":{"include_usage":true},' .. sub(s, open + 1)
    end
    if byte(s, opts.vstart) ~= 123 then -- null or another non-object: replace it
      return sub(s, 1, opts.vstart - 1) .. '{"include_usage":true}' .. sub(s, opts.vend + 1)
    end
    local inner = members(s, opts.vstart, { include_usage = true })
    local flag = last_member(inner, "include_usage")
    if flag and flag.value == true then return nil end
    if flag then
      return sub(s, 1, flag.vstart - 1) .. "true" .. sub(s, flag.vend + 1)
    end
    local sep = #inner > 0 and "," or ""
    return sub(s, 1, opts.vstart) .. '"include_usage":true' .. sep .. sub(s, opts.vstart + 1)
  end))
end

-- Envoy glue ------------------------------------------------------------------------------------

local function settings(handle)
  local md = handle:metadata()
  if md == nil then return nil end
  local paths = md:get("paths")
  if type(paths) ~= "table" then return nil end
  return {
    paths = paths,
    sa_header = md:get("serviceAccountHeader"),
    need_identity = md:get("missingIdentity") == "refuse" and md:get("serviceAccountLimited") == true,
    fail_closed = md:get("failureMode") ~= "open",
    tenant = md:get("tenantId") or "",
  }
end

local function counted(paths, path)
  for _, p in ipairs(paths) do
    if p == path then return true end
  end
  return false
end

local function client_ip(address)
  if type(address) ~= "string" then return nil end
  local v6 = address:match("^%[(.+)%]:%d+$")
  if v6 then return v6 end
  return address:match("^(.+):%d+$") or address
end

local function error_body(message, kind, code)
  return '{"error":{"message":' .. quote(message) .. ',"type":' .. quote(kind) ..
      ',"param":null,"code":' .. quote(code) .. "}" .. "}"
end

local function respond_error(handle, status, message, kind, code)
  handle:respond({ [":status"] = status, ["content-type"] = "application/json" },
    error_body(message, kind, code))
end

local function on_request(handle)
  local cfg = settings(handle)
  if not cfg then return end
  local headers = handle:headers()
  local path = (headers:get(":path") or ""):match("^[^?#]*")
  if not counted(cfg.paths, path) then return end
  local sa = cfg.sa_header and headers:get(cfg.sa_header)
  if sa == "" then sa = nil end
  if not sa and cfg.need_identity then
    respond_error(handle, "401", "This model counts tokens per service account; call it with a valid token "
      .. "of the platform's identity provider.", "invalid_request_error", "missing_identity")
    return
  end
  local meta = handle:streamInfo():dynamicMetadata()
  if sa then meta:set(NS, "sa", sa) end
  local ip = client_ip(handle:streamInfo():downstreamRemoteAddress())
  if ip then meta:set(NS, "ip", ip) end
  if headers:get(":method") == "POST" and find(path, "completions$") then
    local body = handle:body()
    if body then
      local text = body:getBytes(0, body:length())
      local changed = with_include_usage(text)
      if changed then
        body:setBytes(changed)
        -- a chunked request has no length to correct (and must not get one)
        if headers:get("content-length") then headers:replace("content-length", tostring(#changed)) end
      end
    end
  end
end

local QUOTA_NAMES = { ["service-account"] = "service account", ["client-ip"] = "client IP" }

local function on_response(handle)
  local headers = handle:headers()
  local quota = headers:get("x-modelplat-quota")
  if quota and headers:get(":status") == "429" then
    local cfg = settings(handle) or { tenant = "" }
    local reset = (headers:get("x-ratelimit-reset") or ""):match("^%s*(%d+)")
    if reset then headers:replace("retry-after", reset) end
    local who = QUOTA_NAMES[quota] or quota
    local message = "Token quota exceeded for this " .. who .. " (tenant " .. cfg.tenant .. ")."
    if reset then message = message .. " Retry after " .. reset .. " seconds." end
    local body = error_body(message, "rate_limit_exceeded", quota:gsub("-", "_") .. "_token_quota_exceeded")
    handle:body(true):setBytes(body)
    headers:replace("content-type", "application/json")
    if headers:get("content-length") then headers:replace("content-length", tostring(#body)) end
    return
  end
  local meta = handle:streamInfo():dynamicMetadata():get(NS)
  if type(meta) ~= "table" or (meta.sa == nil and meta.ip == nil) then return end
  local kind = (headers:get("content-type") or ""):lower()
  local used
  if find(kind, "text/event-stream", 1, true) then
    local reader = sse_reader(function(data)
      if data == "[DONE]" or not find(data, '"usage"', 1, true) then return end
      local event = json.decode(data)
      local tokens = type(event) == "table" and tokens_of(event.usage)
      if tokens then used = tokens end
    end)
    for chunk in handle:bodyChunks() do
      if not reader.feed(chunk:getBytes(0, chunk:length())) then
        handle:logWarn("modelplat tokens: an SSE line over " .. MAX_LINE .. " bytes was skipped")
      end
    end
    reader.finish()
  else
    local parts, size, too_big = {}, 0, false
    for chunk in handle:bodyChunks() do
      local n = chunk:length()
      size = size + n
      if size > MAX_BODY then
        too_big = true
      elseif n > 0 then
        parts[#parts + 1] = chunk:getBytes(0, n)
      end
    end
    if too_big then
      handle:logWarn("modelplat tokens: response over " .. MAX_BODY .. " bytes not counted")
      return
    end
    if size == 0 then return end
    local err
    used, err = usage_tokens(concat(parts))
    if err and find(kind, "json", 1, true) then
      handle:logWarn("modelplat tokens: response is not JSON (" .. err .. "); not counted")
    end
  end
  if used then
    handle:streamInfo():dynamicMetadata():set(NS, "used", string.format("%d", used))
  end
end

function envoy_on_request(handle)
  local ok, err = pcall(on_request, handle)
  if not ok then
    handle:logErr("modelplat tokens: " .. tostring(err))
    local cfg = settings(handle)
    if cfg and cfg.fail_closed then
      respond_error(handle, "503", "The token quota check failed; try again later.", "server_error",
        "token_quota_unavailable")
    end
  end
end

function envoy_on_response(handle)
  local ok, err = pcall(on_response, handle)
  if not ok then handle:logErr("modelplat tokens: " .. tostring(err)) end
end

-- For tests only (Envoy ignores globals other than the two entry points).
modelplat_tokens = {
  json = json, usage_tokens = usage_tokens, sse_reader = sse_reader,
  with_include_usage = with_include_usage, tokens_of = tokens_of, client_ip = client_ip,
}
