-- wrk script: POST OTLP protobuf batches. BATCH is the path of one batch; with BATCHES=N, the
-- files BATCH.0 .. BATCH.(N-1) are posted in turn (batches whose values differ).
local path = os.getenv("BATCH")
local n = tonumber(os.getenv("BATCHES") or "0")
local bodies = {}
local function read(p)
  local f = assert(io.open(p, "rb"))
  local b = f:read("*all")
  f:close()
  return b
end
if n > 0 then
  for i = 0, n - 1 do
    bodies[#bodies + 1] = read(path .. "." .. i)
  end
else
  bodies[1] = read(path)
end
wrk.method = "POST"
wrk.body = bodies[1]
wrk.headers["Content-Type"] = "application/x-protobuf"

local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
