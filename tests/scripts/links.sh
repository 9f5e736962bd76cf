#!/usr/bin/env bash
# Dead relative links (issue 25): every [text](path) and [text](path#anchor) (and reference definitions
# "[label]: path") in every *.md of the repository, outside code blocks and code spans, must name a file or
# directory that exists; an anchor into a Markdown file (or into the same file, "#anchor") must be the GitHub slug of
# one of its headings. Links with a scheme (https:, mailto:) are not checked. scripts/lint.sh runs it. See --help.
set -euo pipefail
cd "$(dirname "$0")/../.."

case ${1:-} in
  "") ;;
  -h|--help)
    cat <<'USAGE'
usage: bash tests/scripts/links.sh [--help]

Checks every relative link in every *.md of the repository (target/, bench/out/ and .git/ left out): the
file or directory it names must exist (relative to the Markdown file; a leading / is the repository root), and
an anchor into a Markdown file must be one of its headings, slugged as GitHub does (lower case, punctuation
removed, spaces to hyphens, -1, -2 for repeats) or an explicit id="..." / name="...". Links in fenced code
blocks and code spans are not links; http(s):, mailto: and other schemes are not checked. Prints each dead
link as FILE:LINE and fails (exit 1) if there is one. Reads files only; installs and starts nothing; takes
about a second (perl).
USAGE
    exit 0 ;;
  *) echo "links: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

mapfile -t files < <(find . \( -path ./target -o -path ./bench/out -o -path ./.git \) -prune \
  -o -type f -name '*.md' -print | sed 's|^\./||' | sort)
((${#files[@]})) || { echo "links: no Markdown files found" >&2; exit 1; }

perl -CSD -Mutf8 -e '
use strict; use warnings;
use File::Basename qw(dirname);
my (%slugs, $dead, $links);
sub lines_of {   # the lines of a Markdown file, fenced code blocks blanked (line numbers kept)
  my ($f) = @_;
  open(my $fh, "<:encoding(UTF-8)", $f) or return;
  my @l = <$fh>; close $fh;
  my $fence = "";
  for (@l) {
    chomp;
    if ($fence eq "" && /^ {0,3}(`{3,}|~{3,})/) { $fence = substr($1, 0, 1) x length($1); $_ = ""; next }
    if ($fence ne "") { $fence = "" if /^ {0,3}\Q$fence\E/; $_ = ""; next }
  }
  return @l;
}
sub slugs_of {   # GitHub heading anchors of a Markdown file
  my ($f) = @_;
  return $slugs{$f} if $slugs{$f};
  my (%s, %seen);
  for (lines_of($f)) {
    $s{$1} = 1 while /\b(?:id|name)="([^"]+)"/g;
    next unless /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/;
    my $t = $1;
    $t =~ s/!?\[([^\]]*)\]\([^)]*\)/$1/g;   # links and images: their text
    $t =~ s/<[^>]+>//g;                      # inline HTML
    $t = lc $t;
    $t =~ s/[^\p{L}\p{M}\p{N}\p{Pc} -]//g;
    $t =~ s/ /-/g;
    my $slug = exists $seen{$t} ? "$t-" . ++$seen{$t} : $t;
    $seen{$t} //= 0;
    $s{$slug} = 1;
  }
  return $slugs{$f} = \%s;
}
for my $f (@ARGV) {
  my $n = 0;
  for my $line (lines_of($f)) {
    $n++;
    (my $l = $line) =~ s/(`+)(?:(?!\1).)+?\1//g;   # code spans
    my @targets;
    push @targets, $1 while $l =~ /\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;
    push @targets, $1 if $l =~ /^ {0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s|$)/;
    for my $t (@targets) {
      next if $t =~ /^[a-z][a-z0-9+.-]*:/i;        # https:, mailto:, ...
      $links++;
      my ($path, $anchor) = split /#/, $t, 2;
      $path =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
      my $target = $path eq "" ? $f : $path =~ m{^/} ? substr($path, 1) : dirname($f) . "/" . $path;
      if (!-e $target) { print "links: $f:$n: dead link $t (no $target)\n"; $dead++; next }
      next unless defined $anchor && $anchor ne "" && $target =~ /\.md$/i && -f $target;
      $anchor =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
      next if slugs_of($target)->{lc $anchor};
      print "links: $f:$n: dead link $t (no heading #$anchor in $target)\n"; $dead++;
    }
  }
}
if ($dead) { print "links: $dead dead link(s)\n"; exit 1 }
printf "links: ok (%d relative links in %d Markdown files)\n", $links // 0, scalar @ARGV;
' "${files[@]}"
