/*
 * bench/channels/fwbench.c — the system calls of file-write's one file per message, alone
 * (docs/performance.md, "Channels, session 8"). Not built by make:
 *
 *   cc -O2 -o /tmp/fwbench bench/channels/fwbench.c
 *   /tmp/fwbench DIR MODE N    (DIR an empty directory, e.g. under /dev/shm)
 *
 * MODE 0: open/write/close a temporary name, rename it (full paths: before session 8);
 * 1: the same relative to a directory fd; 2: O_TMPFILE + linkat(AT_EMPTY_PATH) (file-write
 * now); 3: O_TMPFILE + linkat through /proc/self/fd; 4: create + write only (the floor,
 * not atomic). Prints CPU and wall time per file.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static double cpu(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static const char body[]="{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"2345-7\"}]},\"valueQuantity\":{\"value\":95,\"unit\":\"mg/dL\"},\"meta\":{\"source\":\"bench\"}}";
int main(int argc,char**argv){
  const char*dir=argv[1]; int mode=atoi(argv[2]); int n=atoi(argv[3]); int base=argc>4?atoi(argv[4]):0;
  char p[4096],t[4096]; int dfd=open(dir,O_RDONLY|O_DIRECTORY);
  double c0=cpu(),w0=now();
  for(int i=base;i<base+n;i++){
    int fd;
    if(mode==0){ snprintf(p,sizeof p,"%s/bench-%d.msg",dir,i); snprintf(t,sizeof t,"%s/.bench-%d.msg.tmp",dir,i);
      fd=open(t,O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC,0600); write(fd,body,sizeof body-1); close(fd); if(rename(t,p))perror("rename");}
    else if(mode==1){ snprintf(p,sizeof p,"bench-%d.msg",i); snprintf(t,sizeof t,".bench-%d.msg.tmp",i);
      fd=openat(dfd,t,O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC,0600); write(fd,body,sizeof body-1); close(fd); if(renameat(dfd,t,dfd,p))perror("renameat");}
    else if(mode==2){ snprintf(p,sizeof p,"bench-%d.msg",i);
      fd=openat(dfd,".",O_TMPFILE|O_WRONLY|O_CLOEXEC,0600); if(fd<0){perror("tmpfile");return 1;} write(fd,body,sizeof body-1);
      if(linkat(fd,"",dfd,p,AT_EMPTY_PATH))perror("linkat"); close(fd);}
    else if(mode==3){ char pp[64]; snprintf(p,sizeof p,"bench-%d.msg",i);
      fd=openat(dfd,".",O_TMPFILE|O_WRONLY|O_CLOEXEC,0600); write(fd,body,sizeof body-1);
      snprintf(pp,sizeof pp,"/proc/self/fd/%d",fd); if(linkat(AT_FDCWD,pp,dfd,p,AT_SYMLINK_FOLLOW))perror("linkat2"); close(fd);}
    else if(mode==4){ snprintf(p,sizeof p,"bench-%d.msg",i);
      fd=openat(dfd,p,O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC,0600); write(fd,body,sizeof body-1); close(fd);}
  }
  double c1=cpu(),w1=now();
  printf("mode %d: %.1f us cpu/file, %.1f us wall/file\n",mode,(c1-c0)*1e6/n,(w1-w0)*1e6/n);
  return 0;
}
