-- rcmd.lua: a Wireshark dissector for rcmd's wire modes (see PROTOCOL.md).
--
-- Plaintext only: it reads the bytes as they cross the network, so it shows nothing of a
-- connection that is encrypted (TLS). Load it with
--   wireshark -X lua_script:demos/wireshark/rcmd.lua
--   tshark -X lua_script:demos/wireshark/rcmd.lua -o rcmd.port:9000 -r capture.pcap
-- and set the port, the mode and the header format under Preferences > Protocols > RCMD
-- (or with -o rcmd.port:N, -o rcmd.mode:classic, -o rcmd.header:i).
--
-- Fields: rcmd.length (the length a header announces), rcmd.tag (a framed message's
-- tag byte: R run, O stdout, E stderr, X exit, ...), rcmd.body.

local rcmd = Proto("rcmd", "rcmd remote command runner")

local f_length = ProtoField.uint64("rcmd.length", "Length", base.DEC)
local f_tag = ProtoField.string("rcmd.tag", "Tag")
local f_meaning = ProtoField.string("rcmd.meaning", "Meaning")
local f_body = ProtoField.bytes("rcmd.body", "Body")
rcmd.fields = { f_length, f_tag, f_meaning, f_body }

local MODES = {
  { 1, "framed", 1 }, { 2, "classic", 2 }, { 3, "json-header", 3 },
  { 4, "length-ack", 4 }, { 5, "naive", 5 },
}
rcmd.prefs.port = Pref.uint("Port", 9000, "TCP port the rcmd server listens on")
rcmd.prefs.mode = Pref.enum("Mode", 1, "Wire mode (--protocol)", MODES, false)
rcmd.prefs.header = Pref.string("Header", "!I",
  "Length header as a Python struct format (--header): !I, i, <H, q ...")

local TAGS = {
  H = "hello", R = "run", P = "run with stdin", V = "env", D = "cwd", T = "tty",
  I = "stdin", Z = "stdin end", K = "signal", W = "resize", O = "stdout",
  E = "stderr", X = "exit", S = "signaled", F = "failed", ["!"] = "error",
  G = "credit", N = "notice",
}

-- The header's size and byte order, from a struct format such as "!I" or "<h".
local function header_shape(fmt)
  local order, code = fmt:match("^([@=<>!]?)(%a)$")
  if not code then return nil end
  local sizes = { b = 1, B = 1, h = 2, H = 2, i = 4, I = 4, l = 4, L = 4, q = 8, Q = 8 }
  local size = sizes[code]
  if not size then return nil end
  -- Native order (@, =, none) is little-endian on the machines rcmd runs on.
  local little = not (order == ">" or order == "!")
  return size, little
end

local function read_len(tvb, offset, size, little)
  local r = tvb(offset, size)
  if size == 8 then
    return little and r:le_uint64() or r:uint64()
  end
  return UInt64(little and r:le_uint() or r:uint())
end

local current_port = nil

local function from_server(pinfo)
  return pinfo.src_port == rcmd.prefs.port
end

-- One whole frame (header and payload) of a header-delimited mode.
local function dissect_frame(tvb, pinfo, tree)
  local size, little = header_shape(rcmd.prefs.header)
  local mode = rcmd.prefs.mode
  local len = read_len(tvb, 0, size, little)
  local sub = tree:add(rcmd, tvb(), "rcmd frame")
  sub:add(f_length, tvb(0, size), len)
  local n = len:tonumber()
  if mode == 1 and n > 0 then
    local tag = tvb(size, 1):string()
    sub:add(f_tag, tvb(size, 1), tag)
    sub:add(f_meaning, tvb(size, 1), TAGS[tag] or "unknown")
    if n > 1 then sub:add(f_body, tvb(size + 1, n - 1)) end
    pinfo.cols.info:append(string.format(" [%d '%s' %s]", n, tag, TAGS[tag] or "?"))
  elseif n > 0 then
    sub:add(f_body, tvb(size, n))
    pinfo.cols.info:append(string.format(" [%d]", n))
  end
  return tvb:len()
end

local function frame_len(tvb, pinfo, offset)
  local size, little = header_shape(rcmd.prefs.header)
  if tvb:len() - offset < size then return -DESEGMENT_ONE_MORE_SEGMENT end
  return size + read_len(tvb, offset, size, little):tonumber()
end

function rcmd.dissector(tvb, pinfo, tree)
  pinfo.cols.protocol = "RCMD"
  local size = header_shape(rcmd.prefs.header)
  local mode = rcmd.prefs.mode
  if not size then
    tree:add(rcmd, tvb(), "rcmd: the header preference is not a struct format")
    return tvb:len()
  end
  -- framed frames both directions; classic and json-header only the server's replies.
  if mode == 1 or (mode == 2 and from_server(pinfo)) then
    dissect_tcp_pdus(tvb, tree, size, frame_len, dissect_frame)
    return tvb:len()
  end
  local sub = tree:add(rcmd, tvb(), "rcmd data")
  local text = tvb():string()
  if mode == 4 and from_server(pinfo) and text:match("^%d+$") then
    sub:add(f_length, tvb(), UInt64(tonumber(text)))
  elseif mode == 3 and from_server(pinfo) and tvb:len() >= size then
    local _, little = header_shape(rcmd.prefs.header)
    sub:add(f_length, tvb(0, size), read_len(tvb, 0, size, little))
  else
    sub:add(f_body, tvb())
  end
  return tvb:len()
end

local function register()
  local tcp = DissectorTable.get("tcp.port")
  if current_port then tcp:remove(current_port, rcmd) end
  current_port = rcmd.prefs.port
  tcp:add(current_port, rcmd)
end

function rcmd.prefs_changed()
  register()
end

register()
