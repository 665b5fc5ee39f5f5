-- wrk script: GET /redeem/<token> with a random one of the seeded live tokens per request.
-- Arguments: <tokens file> (one token a line, written by bench/seed.rs)
function init(args)
  tokens = {}
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

function request()
  return wrk.format("GET", "/redeem/" .. tokens[math.random(#tokens)])
end
