# A fake Messages API for agent-state tests, run inside a session container on loopback (claude's
# ANTHROPIC_BASE_URL points at it). It streams what makes the real claude CLI go through the states
# a person watches for: the first turn of the main loop (a request offering the Bash tool, with the
# test's marker in it) asks to run a command that needs permission; the turn after that command
# waits DELAY seconds (claude is working) and then ends with text. Any other request (a title, a
# side question) gets a short text at once. Every request is logged to STDOUT as "METHOD PATH".
use strict;
$| = 1;
use IO::Socket::INET;
$SIG{CHLD} = 'IGNORE';
my ($port, $delay) = (shift || 4599, shift || 8);
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port", Listen => 64, ReuseAddr => 1) or die "listen: $!";
print "listening on $port\n";

sub event { my ($c, $name, $json) = @_; print $c "event: $name\ndata: $json\n\n"; }

sub stream {
  my ($c, $block, $delta, $stop) = @_;
  print $c "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
  event($c, 'message_start', '{"type":"message_start","message":{"id":"msg_para","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}');
  event($c, 'content_block_start', qq({"type":"content_block_start","index":0,"content_block":$block}));
  event($c, 'content_block_delta', qq({"type":"content_block_delta","index":0,"delta":$delta}));
  event($c, 'content_block_stop', '{"type":"content_block_stop","index":0}');
  event($c, 'message_delta', qq({"type":"message_delta","delta":{"stop_reason":"$stop","stop_sequence":null},"usage":{"output_tokens":9}}));
  event($c, 'message_stop', '{"type":"message_stop"}');
}

sub text { my ($c, $words) = @_; stream($c, '{"type":"text","text":""}', qq({"type":"text_delta","text":"$words"}), 'end_turn'); }

while (my $c = $s->accept) {
  next if fork();
  my $line = <$c>;
  my $length = 0;
  while (my $h = <$c>) { last if $h =~ /^\r?\n$/; $length = $1 if $h =~ /^content-length:\s*(\d+)/i; }
  my $body = '';
  read($c, $body, $length) if $length;
  my ($method, $path) = split / /, $line;
  print "$method $path\n";
  if ($path !~ m{^/v1/messages(\?|$)}) {
    print $c "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
  } elsif ($body =~ /toolu_para_1/) {
    sleep $delay;
    text($c, 'All done.');
  } elsif ($body =~ /PARA-STATE-TEST/ && $body =~ /"name":"Bash"/) {
    stream($c, '{"type":"tool_use","id":"toolu_para_1","name":"Bash","input":{}}',
      '{"type":"input_json_delta","partial_json":"{\"command\":\"touch made-by-the-tool.txt\",\"description\":\"Make a file\"}"}', 'tool_use');
  } else {
    text($c, 'ok');
  }
  close $c;
  exit 0;
}
