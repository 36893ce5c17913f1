-- wrk script: POST one OTLP protobuf batch (path in the BATCH environment variable).
local f = assert(io.open(os.getenv("BATCH"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/x-protobuf"
